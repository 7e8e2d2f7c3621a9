//! Unit tests on hand-made files; the fixtures and the independent checks (exiftool,
//! pdfinfo, pixel and page-render comparisons) are in tests/attachment_metadata.rs.

use super::*;

fn opts() -> Options<'static> {
    Options {
        declared_type: None,
        file_name: None,
        pdf_id: [7; 16],
    }
}
