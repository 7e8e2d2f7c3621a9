//! The attachment step of the MIME rebuild: a binary leaf's bytes go through [`metadata`]
//! when `privacy.strip_attachment_metadata` is on, and a file that cannot be cleaned becomes
//! a [`RewriteError::Metadata`] naming the attachment (by its file name with members' names
//! and addresses replaced, in safe characters, or by its position).

use mail_parser::{MessagePart, MimeHeaders};
use sha2::{Digest, Sha256};

use super::emit::Writer;
use super::metadata::{self, Options};
use super::RewriteError;

/// Characters of a file name quoted in a refusal, at most.
const MAX_NAME_CHARS: usize = 60;

impl Writer<'_> {
    /// `data` without its metadata, or None when it passes as it is (the step is off, or
    /// the format is not one [`metadata`] cleans).
    pub(super) fn clean_attachment(
        &mut self,
        part: &MessagePart<'_>,
        data: &[u8],
    ) -> Result<Option<Vec<u8>>, RewriteError> {
        if !self.ctx.strip_attachment_metadata {
            return Ok(None);
        }
        self.attachments += 1;
        let declared = part.content_type().map(|c| match c.subtype() {
            Some(sub) => format!("{}/{sub}", c.ctype()),
            None => c.ctype().to_string(),
        });
        let opts = Options {
            declared_type: declared.as_deref(),
            file_name: part.attachment_name(),
            pdf_id: self.pdf_id(),
        };
        metadata::strip(data, &opts).map_err(|f| RewriteError::Metadata {
            name: self.refusal_name(part),
            format: f.format.name(),
            reason: f.reason,
        })
    }

    /// A new PDF `/ID` for this attachment: the message nonce and the attachment's number.
    fn pdf_id(&self) -> [u8; 16] {
        let mut h = Sha256::new();
        h.update(b"remailer pdf id\0");
        h.update(self.ctx.nonce);
        h.update(self.attachments.to_be_bytes());
        let mut id = [0u8; 16];
        id.copy_from_slice(&h.finalize()[..16]);
        id
    }

    fn refusal_name(&mut self, part: &MessagePart<'_>) -> String {
        let mapped = part
            .attachment_name()
            .map(|n| self.map.replace_file_name(n));
        let safe: String = mapped
            .as_deref()
            .unwrap_or("")
            .chars()
            .filter(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\\') || *c == ' ')
            .take(MAX_NAME_CHARS)
            .collect();
        match safe.trim() {
            "" => format!("number {}", self.attachments),
            name => format!("\"{name}\""),
        }
    }
}
