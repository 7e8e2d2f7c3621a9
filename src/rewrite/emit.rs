//! What every writer of the rewrite shares: the per-message [`Writer`] state (the address
//! [`Mapper`], the context, open levels, Content-ID replacements, boundaries) and the header
//! writers. The bottom of the rewrite's own dependency order (ARCHITECTURE.md §4): the MIME
//! tree ([`super::mime`], which adds the part writers to [`Writer`]), the header allowlist
//! ([`super::headers`]) and the report parts ([`super::report`]) all write through it, and
//! none of them imports another for it.

use std::collections::HashMap;

use super::mapper::Mapper;
use super::{Context, Directory};

/// Writes the rewritten message; holds the per-message state.
pub struct Writer<'m> {
    pub map: Mapper<'m>,
    pub(super) ctx: &'m Context<'m>,
    pub(super) dir: &'m dyn Directory,
    /// Multipart and embedded-message levels open (see [`super::classify::MAX_DEPTH`]).
    pub(super) depth: u32,
    /// Original Content-ID (no brackets) → opaque replacement.
    pub(super) content_ids: HashMap<String, String>,
    pub(super) boundaries: u32,
    /// Binary leaves seen by the attachment step ([`super::attachment`]).
    pub(super) attachments: u32,
}

impl<'m> Writer<'m> {
    pub fn new(ctx: &'m Context<'m>, dir: &'m dyn Directory) -> Self {
        Writer {
            map: Mapper::new(ctx, dir),
            ctx,
            dir,
            depth: 0,
            content_ids: HashMap::new(),
            boundaries: 0,
            attachments: 0,
        }
    }

    pub fn context(&self) -> &'m Context<'m> {
        self.ctx
    }

    pub fn directory(&self) -> &'m dyn Directory {
        self.dir
    }

    /// A fresh multipart boundary (the original ones can carry host names).
    pub(super) fn next_boundary(&mut self) -> String {
        self.boundaries += 1;
        format!(
            "=_rm{:04x}_{}",
            self.boundaries,
            hex::encode(&self.ctx.nonce[..12])
        )
    }
}

/// A header with a value that mail-builder encodes and folds.
pub fn write_header(out: &mut Vec<u8>, name: &str, value: &impl mail_builder::headers::Header) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    value.write_header(out, name.len() + 2);
}

/// A header whose value is short, ASCII and needs no folding or encoding.
pub fn write_raw(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}
