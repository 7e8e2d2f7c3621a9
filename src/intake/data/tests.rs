//! The end-of-data receiver against an obviously correct reference, exhaustively for short
//! inputs, and against every smuggling look-alike at every split point.

use super::{BareLineEnd, DataEnd, DataReceiver};

/// The reference: DATA ends at the first `CRLF.CRLF` of `CRLF + input`; the data before it
/// is refused if it holds a bare CR or LF, else unstuffed line by line.
fn reference(input: &[u8], limit: usize) -> Option<(usize, DataEnd)> {
    let s: Vec<u8> = [b"\r\n".as_slice(), input].concat();
    let p = s.windows(5).position(|w| w == b"\r\n.\r\n")?;
    let raw = &s[2..p + 2];
    let consumed = p + 3;
    if let Some(kind) = first_bare(raw) {
        return Some((consumed, DataEnd::BareLineEnd(kind)));
    }
    let mut body = Vec::new();
    let mut line_start = true;
    for (i, &b) in raw.iter().enumerate() {
        if !(line_start && b == b'.') {
            body.push(b);
        }
        line_start = b == b'\n' && i > 0 && raw[i - 1] == b'\r';
    }
    if body.len() > limit {
        return Some((consumed, DataEnd::TooBig));
    }
    Some((consumed, DataEnd::Message(body)))
}

/// Which bare line end comes first in `raw`, if any.
fn first_bare(raw: &[u8]) -> Option<BareLineEnd> {
    for (i, &b) in raw.iter().enumerate() {
        if b == b'\n' && (i == 0 || raw[i - 1] != b'\r') {
            return Some(BareLineEnd::Lf);
        }
        if b == b'\r' && raw.get(i + 1) != Some(&b'\n') {
            return Some(BareLineEnd::Cr);
        }
    }
    None
}

/// Feeds `input` in the given pieces; stops at the end of data.
fn feed(pieces: &[&[u8]], limit: usize) -> Option<(usize, DataEnd)> {
    let mut r = DataReceiver::new(limit);
    let mut offset = 0;
    for piece in pieces {
        if let Some((used, end)) = r.ingest(piece) {
            return Some((offset + used, end));
        }
        offset += piece.len();
    }
    None
}

/// Every way of feeding `input`: whole, split once at every point, split at every pair of
/// points (short inputs), and byte by byte. All must agree with the reference.
fn check_all_splits(input: &[u8], limit: usize) {
    let want = reference(input, limit);
    assert_eq!(feed(&[input], limit), want, "whole: {:?}", show(input));
    for a in 0..=input.len() {
        let (x, y) = input.split_at(a);
        assert_eq!(
            feed(&[x, y], limit),
            want,
            "split at {a}: {:?}",
            show(input)
        );
        if input.len() <= 24 {
            for b in a..=input.len() {
                let (y1, y2) = input[a..].split_at(b - a);
                assert_eq!(
                    feed(&[x, y1, y2], limit),
                    want,
                    "split at {a},{b}: {:?}",
                    show(input)
                );
            }
        }
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(feed(&bytes, limit), want, "byte by byte: {:?}", show(input));
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).escape_debug().to_string()
}

#[test]
fn every_short_input_matches_the_reference() {
    // All strings of up to 8 bytes over CR, LF, '.', 'a', each followed by a real end.
    let alphabet = [b'\r', b'\n', b'.', b'a'];
    let mut count = 0;
    for len in 0..=8u32 {
        for n in 0..4usize.pow(len) {
            let mut input: Vec<u8> = (0..len)
                .map(|i| alphabet[(n / 4usize.pow(i)) % 4])
                .collect();
            let want_alone = reference(&input, 1000);
            input.extend_from_slice(b"\r\n.\r\n");
            let want = reference(&input, 1000);
            assert!(want.is_some());
            assert_eq!(feed(&[&input], 1000), want, "{:?}", show(&input));
            // and without the terminator: the receiver agrees whether data has ended
            input.truncate(len as usize);
            assert_eq!(feed(&[&input], 1000), want_alone, "{:?}", show(&input));
            count += 1;
        }
    }
    assert_eq!(count, (0..=8).map(|l| 4usize.pow(l)).sum::<usize>());
}

/// The look-alikes of the smuggling papers (SEC Consult 2023, CVE-2023-51764/51765/51766)
/// and runs of CR.
const LOOK_ALIKES: &[&[u8]] = &[
    b"\n.\n",
    b"\n.\r\n",
    b"\r\n.\n",
    b"\r.\r\n",
    b"\r.\r",
    b"\r\n.\r",
    b"\r\n.\r\r\n",
    b"\r\n.\r\r\r\r\n",
    b"\r\r\n.\r\r\n",
    b"\n.\r\r\n",
    b"\r\n\r.\r\n",
    b"\r\n.\n\r\n",
    b"\r\n..\r\n",
    b"\r\n.\x00\r\n",
    b"\r\n .\r\n",
];

const SMUGGLED: &[u8] = b"MAIL FROM:<joe@real.example>\r\nRCPT TO:<ann@remailer.test>\r\nDATA\r\n\
From: joe@real.example\r\nSubject: smuggled\r\n\r\nsecond message\r\n";

#[test]
fn no_look_alike_ends_the_data() {
    for look in LOOK_ALIKES {
        let input = [
            b"Subject: first\r\n\r\nbody".as_slice(),
            look,
            SMUGGLED,
            b"\r\n.\r\n",
            b"QUIT\r\n",
        ]
        .concat();
        check_all_splits(&input, 10_000);
        let (used, end) = feed(&[&input], 10_000).expect("ends");
        assert_eq!(&input[used..], b"QUIT\r\n", "{:?}", show(look));
        match end {
            DataEnd::BareLineEnd(_) => {}
            DataEnd::Message(m) => {
                // Only look-alikes without a bare line end may pass, as one message that
                // holds the would-be second transaction as text.
                assert!(!look
                    .windows(2)
                    .any(|w| w == b"\r\r" || w[1] == b'\n' && w[0] != b'\r'));
                assert!(m.windows(8).any(|w| w == b"smuggled"), "{:?}", show(look));
            }
            DataEnd::TooBig => panic!("not too big"),
        }
    }
}

#[test]
fn a_message_with_a_bare_line_end_is_refused() {
    let cases: &[(&[u8], BareLineEnd)] = &[
        (b"a\nb\r\n.\r\n", BareLineEnd::Lf),
        (b"a\rb\r\n.\r\n", BareLineEnd::Cr),
        (b"a\r\r\n.\r\n", BareLineEnd::Cr),
        (b"\n.\r\n.\r\n", BareLineEnd::Lf),
        (b"a\r\n.\r\r\n.\r\n", BareLineEnd::Cr),
        (b"a\r\n.\nb\r\n.\r\n", BareLineEnd::Lf),
    ];
    for (input, kind) in cases {
        assert_eq!(
            feed(&[input], 1000),
            Some((input.len(), DataEnd::BareLineEnd(*kind))),
            "{:?}",
            show(input)
        );
        check_all_splits(input, 1000);
    }
}

#[test]
fn dot_stuffing_is_undone_once() {
    let input = b"..leading\r\n.x\r\n...\r\nmid.dle\r\n\r\n..\r\n.\r\n";
    assert_eq!(
        feed(&[input], 1000),
        Some((
            input.len(),
            DataEnd::Message(b".leading\r\nx\r\n..\r\nmid.dle\r\n\r\n.\r\n".to_vec())
        ))
    );
    check_all_splits(input, 1000);
}

#[test]
fn the_data_may_be_empty_and_what_follows_is_left() {
    assert_eq!(
        feed(&[b".\r\nNOOP\r\n"], 10),
        Some((3, DataEnd::Message(Vec::new())))
    );
    assert_eq!(
        feed(&[b"\r\n.\r\n"], 10),
        Some((5, DataEnd::Message(b"\r\n".to_vec())))
    );
    assert_eq!(feed(&[b"no end yet\r\n"], 10), None);
    assert_eq!(feed(&[b"no end yet\r\n."], 100), None);
    assert_eq!(feed(&[b"no end yet\r\n.\r"], 100), None);
}

#[test]
fn the_size_limit_counts_unstuffed_bytes() {
    // exactly at the limit: 8 bytes "..ab\r\n" unstuffs to ".ab\r\n" (5)
    assert_eq!(
        feed(&[b"..ab\r\n.\r\n"], 5),
        Some((9, DataEnd::Message(b".ab\r\n".to_vec())))
    );
    assert_eq!(feed(&[b"..abc\r\n.\r\n"], 5), Some((10, DataEnd::TooBig)));
    // a big message is not kept, yet the receiver still finds the real end
    let mut r = DataReceiver::new(1024);
    for _ in 0..1000 {
        assert_eq!(r.ingest(&[b'x'; 4096]), None);
    }
    assert!(
        r.message.capacity() == 0,
        "nothing kept once over the limit"
    );
    assert_eq!(r.size(), 4096 * 1000);
    assert_eq!(r.ingest(b"\r\n.\r\nQUIT\r\n"), Some((5, DataEnd::TooBig)));
    // a bare line end outranks the size
    assert_eq!(
        feed(&[b"abcdefgh\nij\r\n.\r\n"], 4),
        Some((16, DataEnd::BareLineEnd(BareLineEnd::Lf)))
    );
}
