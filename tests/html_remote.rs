//! `privacy.remote_content` (issue 13, point 3): a Mailchimp/Substack-shaped newsletter
//! (`tests/fixtures/rewrite/newsletter_tracking_pixels.eml`: a 1×1 tracking pixel, remote
//! logos, `srcset`, `<picture><source>`, `background=`, `style="background:url(…)"`,
//! `<style>` with `@import` and `background-image:url(…)`, `<link>` stylesheet, preload and
//! icon, `<video poster>`, `<input type=image>`, `<iframe>`, a `cid:` image of the
//! multipart/related and a `data:` image) is rewritten, and the HTML that comes out is read by
//! an independent parser (Python's `html.parser`, `tests/support/html_loads.py`): with
//! "strip" no remote load is left and the placeholders name the blocked hosts, the `cid:`
//! (renamed with its part's Content-ID) and `data:` images stay, and no member's real address
//! or name is anywhere; with "keep" the remote URLs are all still there.

#[path = "fixtures/rewrite/support.rs"]
mod support;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use mail_parser::{MimeHeaders, PartType};
use remailer::rewrite::{parse, rewrite, scan};
use support::{fixture_context, Cast, REAL_ADDRESSES, REAL_NAMES};

fn fixture() -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/rewrite/newsletter_tracking_pixels.eml");
    std::fs::read(path).unwrap()
}

/// The rewritten message's HTML part and the Content-ID of its image part.
fn rewritten(strip_remote: bool) -> (String, String) {
    let cast = Cast::new();
    let raw = fixture();
    let scanned = scan(&raw);
    let mut holder = fixture_context(&cast, &scanned, false);
    holder.strip_remote = strip_remote;
    let out = rewrite(&raw, &holder.context(), &cast.dir).unwrap().message;
    let msg = parse(&out).unwrap();
    let html = msg
        .parts
        .iter()
        .find_map(|p| match &p.body {
            PartType::Html(t) => Some(t.to_string()),
            _ => None,
        })
        .expect("an HTML part");
    let cid = msg
        .parts
        .iter()
        .find_map(|p| p.content_id())
        .expect("the image keeps a Content-ID")
        .to_string();
    (html, cid)
}

struct Seen {
    loads: Vec<(String, String, String)>,
    images: Vec<String>,
    text: String,
}

/// What Python's html.parser finds in `html`.
fn python_reads(html: &str) -> Seen {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/html_loads.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(html.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "html_loads.py failed");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let loads = v["loads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let s = |i: usize| l[i].as_str().unwrap().to_string();
            (s(0), s(1), s(2))
        })
        .collect();
    let images = v["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    Seen {
        loads,
        images,
        text: v["text"].as_str().unwrap().to_string(),
    }
}

fn is_remote(url: &str) -> bool {
    let u = url.trim().to_ascii_lowercase();
    !(u.is_empty() || u.starts_with("cid:") || u.starts_with("data:") || u.starts_with('#'))
}

#[test]
fn strip_leaves_no_remote_load_and_names_the_blocked_hosts() {
    let (html, cid) = rewritten(true);
    let seen = python_reads(&html);
    let remote: Vec<_> = seen.loads.iter().filter(|l| is_remote(&l.2)).collect();
    assert!(remote.is_empty(), "remote loads left: {remote:?}\n{html}");
    for host in [
        "tracker.example",
        "mcusercontent.example",
        "substack.example",
    ] {
        assert!(
            !html.contains(&format!("https://{host}")) && !html.contains(&format!("//cdn.{host}")),
            "{host} still linked"
        );
    }
    // The placeholders name the hosts (an independent reader sees them as text).
    for p in [
        "[remote image from cdn.mcusercontent.example removed]",
        "[remote image from open.tracker.example removed]",
        "[remote image from forms.tracker.example removed]",
        "[remote content from embed.tracker.example removed]",
    ] {
        assert!(seen.text.contains(p), "no placeholder {p:?}\n{html}");
    }
    // cid: follows the renamed Content-ID, data: stays, and so does the ordinary link.
    let cid = cid.trim_matches(['<', '>']);
    assert!(
        seen.images.contains(&format!("cid:{cid}")),
        "{:?}",
        seen.images
    );
    assert!(seen
        .images
        .iter()
        .any(|s| s.starts_with("data:image/gif;base64,")));
    assert!(seen
        .loads
        .iter()
        .any(|l| l.1 == "css" && l.2 == format!("cid:{cid}")));
    assert!(html.contains("KEEP:newsletter_tracking_pixels"));
    assert!(html.contains(r#"content: "\2022""#), "unrelated CSS kept");
    assert!(!html.contains("real.example/ga") || html.contains("<a href="));
}

#[test]
fn no_member_address_or_name_in_text_attributes_or_comments() {
    for strip in [true, false] {
        let (html, _) = rewritten(strip);
        let seen = python_reads(&html);
        let everything = format!("{}\n{}", seen.text, html).to_lowercase();
        let everything = everything.replace("&nbsp;", " ").replace('\u{a0}', " ");
        for f in REAL_ADDRESSES.iter().chain(REAL_NAMES) {
            assert!(!everything.contains(f), "{f} left (strip={strip})\n{html}");
        }
        assert!(!everything.contains("ann%40mail.example"));
        // mailto: links go to the alias.
        assert!(
            html.contains("mailto:joe@remailer.test?subject=News"),
            "{html}"
        );
    }
}

#[test]
fn keep_passes_the_remote_urls_on() {
    let (html, _) = rewritten(false);
    let seen = python_reads(&html);
    let remote: Vec<_> = seen.loads.iter().filter(|l| is_remote(&l.2)).collect();
    // Every kind of load of the fixture is still there.
    for (tag, attr) in [
        ("link", "href"),
        ("style", "css"),
        ("body", "background"),
        ("table", "css"),
        ("td", "background"),
        ("img", "src"),
        ("img", "srcset"),
        ("source", "srcset"),
        ("video", "poster"),
        ("input", "src"),
        ("iframe", "src"),
    ] {
        assert!(
            remote.iter().any(|l| l.0 == tag && l.1 == attr),
            "{tag} {attr} missing with keep: {remote:?}"
        );
    }
    assert!(!html.contains("[remote "));
}
