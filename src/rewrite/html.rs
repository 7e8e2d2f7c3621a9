//! HTML parts, rewritten with a streaming HTML tokenizer (`lol_html`): members' real
//! addresses and names are replaced in every text node, attribute value (`mailto:` links,
//! `title`, `alt`…) and comment; `cid:` references follow the renamed Content-IDs; and, with
//! `privacy.remote_content = "strip"`, everything a mail client would load from the network
//! when the message is opened is removed:
//! - `<img>`, `<input type=image>`, SVG `<image>` with a remote source are replaced by the
//!   text `[remote image from HOST removed]`; `<iframe>`, `<frame>`, `<embed>`, `<object>`,
//!   `<applet>` with a remote source by `[remote content from HOST removed]`;
//! - remote `srcset` candidates, `background`, `poster`, `lowsrc`, `dynsrc` and the `src` of
//!   `<video>`, `<audio>`, `<track>` are dropped; `<source>` with a remote source,
//!   `<link>` (stylesheets, preloads, icons), `<base>`, `<meta http-equiv=refresh|link>`,
//!   `<script src>` and `<noscript>` (which a client without scripts parses as markup the
//!   tokenizer reads as text) are removed;
//! - CSS in `style` attributes and `<style>` elements loses remote `url()`s and `@import`s
//!   ([`super::css`]).
//!
//! Only `cid:` and `data:` loads stay; `<a href>` links stay (they load nothing on open).
//! The host in a placeholder is run through the address scrubber too. A part the tokenizer
//! cannot read unambiguously refuses the message (`Uncheckable::Html`), never passes.

use std::cell::RefCell;
use std::collections::HashMap;

use lol_html::html_content::{ContentType, Element, TextType};
use lol_html::{doc_comments, doc_text, element, rewrite_str, RewriteStrSettings};

use super::css;
use super::mapper::Mapper;
use super::{RewriteError, Uncheckable};

/// Elements replaced by a placeholder when their source is remote, and the attributes that
/// hold it.
const IMAGES: &[&str] = &["img", "image"];
const EMBEDS: &[&str] = &["iframe", "frame", "embed", "object", "applet", "portal"];
/// Attributes that load a URL on open, on any element (dropped when remote).
const LOADING_ATTRS: &[&str] = &["background", "poster", "lowsrc", "dynsrc"];
/// Elements whose `src` is dropped when remote (the element stays).
const MEDIA: &[&str] = &["video", "audio", "track", "bgsound"];

struct State<'a, 'm> {
    map: &'a mut Mapper<'m>,
    cids: &'a HashMap<String, String>,
    strip: bool,
    /// Text of the current text node, collected over its chunks.
    text: String,
}

impl State<'_, '_> {
    /// Members' addresses and names replaced, `cid:` references renamed.
    fn scrub(&mut self, s: &str) -> String {
        let s = self.map.replace(s);
        replace_cids(&s, self.cids)
    }

    /// The placeholder for a blocked load from `url`.
    fn placeholder(&mut self, what: &str, host: Option<String>) -> String {
        match host {
            Some(h) => {
                let h = self.map.replace(&h).into_owned();
                format!("[remote {what} from {h} removed]")
            }
            None => format!("[remote {what} removed]"),
        }
    }
}

/// Rewrites one decoded HTML part (see the module documentation).
pub fn rewrite(
    html: &str,
    map: &mut Mapper<'_>,
    cids: &HashMap<String, String>,
    strip: bool,
) -> Result<String, RewriteError> {
    let state = RefCell::new(State {
        map,
        cids,
        strip,
        text: String::new(),
    });
    let settings = RewriteStrSettings::new()
        .append_element_content_handler(element!("*", |el| {
            on_element(&mut state.borrow_mut(), el);
            Ok(())
        }))
        .append_document_content_handler(doc_text!(|chunk| {
            let mut st = state.borrow_mut();
            st.text.push_str(chunk.as_str());
            if !chunk.last_in_text_node() {
                chunk.remove();
                return Ok(());
            }
            let text = std::mem::take(&mut st.text);
            let mut new = st.scrub(&text);
            if st.strip && chunk.text_type() == TextType::RawText {
                let mut blocked = Vec::new();
                new = css::strip(&new, &mut blocked).into_owned();
            }
            chunk.replace(&new, ContentType::Html);
            Ok(())
        }))
        .append_document_content_handler(doc_comments!(|c| {
            let text = c.text();
            let new = state.borrow_mut().scrub(&text);
            if new != text {
                c.set_text(&new.replace("--", "- -"))?;
            }
            Ok(())
        }));
    rewrite_str(html, settings).map_err(|_| RewriteError::Uncheckable(Uncheckable::Html))
}

fn on_element(st: &mut State<'_, '_>, el: &mut Element<'_, '_>) {
    let attrs: Vec<(String, String)> = el
        .attributes()
        .iter()
        .map(|a| (a.name(), a.value()))
        .collect();
    for (name, value) in &attrs {
        let new = st.scrub(value);
        if new != *value {
            let _ = el.set_attribute(name, &new);
        }
    }
    if st.strip {
        strip_element(st, el);
    }
}

/// The attribute `name` of `el` when it names a remote load.
fn remote(el: &Element<'_, '_>, name: &str) -> Option<String> {
    el.get_attribute(name)
        .filter(|v| !css::is_local(v) && !css::is_empty_ref(v))
}

fn strip_element(st: &mut State<'_, '_>, el: &mut Element<'_, '_>) {
    let tag = el.tag_name();
    let tag = tag.as_str();
    match tag {
        "base" | "noscript" => return el.remove(),
        "link" if remote(el, "href").is_some() || el.has_attribute("imagesrcset") => {
            return el.remove()
        }
        "meta" if loading_meta(el) => return el.remove(),
        "script" if remote(el, "src").is_some() => return el.remove(),
        "source" if remote(el, "src").is_some() => return el.remove(),
        _ => {}
    }
    let image_input = tag == "input"
        && el
            .get_attribute("type")
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("image"));
    if IMAGES.contains(&tag) || image_input {
        let src = ["src", "href", "xlink:href"]
            .iter()
            .find_map(|a| remote(el, a));
        if let Some(src) = src {
            let text = st.placeholder("image", css::host_of(&src));
            return el.replace(&text, ContentType::Text);
        }
    }
    if EMBEDS.contains(&tag) {
        let src = ["src", "data", "code", "codebase"]
            .iter()
            .find_map(|a| remote(el, a));
        if let Some(src) = src {
            let text = st.placeholder("content", css::host_of(&src));
            return el.replace(&text, ContentType::Text);
        }
    }
    if MEDIA.contains(&tag) && remote(el, "src").is_some() {
        el.remove_attribute("src");
    }
    if tag != "a" && tag != "area" && el.namespace_uri() != "http://www.w3.org/1999/xhtml" {
        // SVG `<use href>`, `<feImage href>`…: in SVG, href loads.
        for a in ["href", "xlink:href"] {
            if remote(el, a).is_some() {
                el.remove_attribute(a);
            }
        }
    }
    for a in LOADING_ATTRS {
        if remote(el, a).is_some() {
            el.remove_attribute(a);
        }
    }
    for a in ["srcset", "imagesrcset"] {
        if let Some(set) = el.get_attribute(a) {
            match local_srcset(&set) {
                Some(kept) if kept != set => {
                    let _ = el.set_attribute(a, &kept);
                }
                Some(_) => {}
                None => el.remove_attribute(a),
            }
        }
    }
    if let Some(style) = el.get_attribute("style") {
        strip_style(el, &style);
    }
}

/// `<meta http-equiv>` that loads or redirects (`refresh`, `link`, `set-cookie`).
fn loading_meta(el: &Element<'_, '_>) -> bool {
    let equiv = el.get_attribute("http-equiv").unwrap_or_default();
    ["refresh", "link", "set-cookie"]
        .iter()
        .any(|e| equiv.trim().eq_ignore_ascii_case(e))
}

/// A `srcset` with only its local (`cid:`/`data:`) candidates; None when none is left.
fn local_srcset(set: &str) -> Option<String> {
    // `data:` URLs hold commas; a candidate starts after ", " or at the start. A set with a
    // data: URL and anything else is kept only when every candidate is local.
    if css::is_local(set) && !set.contains("://") && !set.contains("//") {
        return Some(set.to_string());
    }
    let kept: Vec<&str> = set
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty() && css::is_local(c) && !c.contains("//"))
        .collect();
    (!kept.is_empty()).then(|| kept.join(", "))
}

/// The `style` attribute without remote loads. A value with character references (which
/// the client decodes before reading the CSS, so `u&#114;l(` is `url(`) that would load
/// anything after decoding is dropped whole.
fn strip_style(el: &mut Element<'_, '_>, style: &str) {
    let mut blocked = Vec::new();
    if has_char_refs(style) {
        let decoded = decode_refs(style);
        if css::strip(&decoded, &mut blocked) != decoded.as_str() {
            el.remove_attribute("style");
        }
        return;
    }
    let new = css::strip(style, &mut blocked);
    if new != style {
        let _ = el.set_attribute("style", &new);
    }
}

fn has_char_refs(s: &str) -> bool {
    let b = s.as_bytes();
    memchr::memchr_iter(b'&', b).any(|i| {
        b.get(i + 1)
            .is_some_and(|c| *c == b'#' || c.is_ascii_alphabetic())
    })
}

/// Numeric character references and the named ones that can spell CSS syntax, decoded
/// (other named references are left as they are: they cannot make `url(` or `@import`).
fn decode_refs(s: &str) -> String {
    const NAMED: &[(&str, char)] = &[
        ("quot", '"'),
        ("apos", '\''),
        ("amp", '&'),
        ("lt", '<'),
        ("gt", '>'),
        ("lpar", '('),
        ("rpar", ')'),
        ("colon", ':'),
        ("sol", '/'),
        ("bsol", '\\'),
        ("commat", '@'),
        ("period", '.'),
        ("semi", ';'),
        ("tab", '\t'),
        ("newline", '\n'),
        ("nbsp", ' '),
    ];
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(p) = rest.find('&') {
        out.push_str(&rest[..p]);
        rest = &rest[p + 1..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '#'))
            .unwrap_or(rest.len());
        let name = &rest[..end];
        let decoded = if let Some(num) = name.strip_prefix('#') {
            let v = match num.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok(),
                None => num.parse().ok(),
            };
            v.map(|v| char::from_u32(v).unwrap_or('\u{fffd}'))
        } else {
            NAMED
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, c)| *c)
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = rest[end..].strip_prefix(';').unwrap_or(&rest[end..]);
            }
            None => out.push('&'),
        }
    }
    out.push_str(rest);
    out
}

/// `cid:OLD` references renamed to the opaque Content-IDs the parts now carry.
pub fn replace_cids(html: &str, cids: &HashMap<String, String>) -> String {
    if cids.is_empty() || !html.contains("cid:") {
        return html.to_string();
    }
    let mut html = html.to_string();
    for (old, new) in cids {
        let needle = format!("cid:{old}");
        if html.contains(&needle) {
            html = html.replace(&needle, &format!("cid:{new}"));
        }
    }
    html
}
