//! A streaming XLSX writer for exports: one worksheet of text and number cells, written row by row
//! into a zip stream (sizes in data descriptors, no seeking), so the first bytes of a download
//! leave before its last row is read and memory does not grow with the rows.
//!
//! `rust_xlsxwriter` writes whole workbooks only (even in its constant-memory mode the zip is
//! assembled at the end), which made a million-row download wait seconds for its first byte. The
//! package here is the least SpreadsheetML that Excel, LibreOffice and calamine open: content
//! types, relationships, a workbook of one sheet, a stylesheet, and the sheet with inline strings
//! (no shared-strings table to hold in memory).

use std::{
    borrow::Cow,
    io::{self, Write},
};

use zip::{
    write::{SimpleFileOptions, StreamWriter},
    CompressionMethod, ZipWriter,
};

/// One cell of a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    Empty,
    Text(Cow<'a, str>),
    Number(f64),
}

/// Rows of a worksheet, the header's included (Excel's limit).
pub const MAX_ROWS: u32 = 1_048_576;

const CONTENT_TYPES: &str = concat!(
    r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>"#,
    r#"<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">"#,
    r#"<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>"#,
    r#"<Default Extension="xml" ContentType="application/xml"/>"#,
    r#"<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>"#,
    r#"<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>"#,
    r#"<Override PartName="/xl/styles.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>"#,
    r#"</Types>"#
);

const PACKAGE_RELS: &str = concat!(
    r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>"#,
    r#"<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">"#,
    r#"<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/>"#,
    r#"</Relationships>"#
);

const WORKBOOK: &str = concat!(
    r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>"#,
    r#"<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" "#,
    r#"xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">"#,
    r#"<sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>"#
);

const WORKBOOK_RELS: &str = concat!(
    r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>"#,
    r#"<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">"#,
    r#"<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/>"#,
    r#"<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles" Target="styles.xml"/>"#,
    r#"</Relationships>"#
);

/// The default font, fill, border and cell format every sheet refers to as style 0.
const STYLES: &str = concat!(
    r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>"#,
    r#"<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">"#,
    r#"<fonts count="1"><font><sz val="11"/><name val="Calibri"/></font></fonts>"#,
    r#"<fills count="2"><fill><patternFill patternType="none"/></fill><fill><patternFill patternType="gray125"/></fill></fills>"#,
    r#"<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>"#,
    r#"<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>"#,
    r#"<cellXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/></cellXfs>"#,
    r#"<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>"#,
    r#"</styleSheet>"#
);

const SHEET_START: &str = concat!(
    r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>"#,
    r#"<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>"#
);

const SHEET_END: &str = "</sheetData></worksheet>";

/// A workbook of one sheet being written; rows go straight into the zip stream.
pub struct SheetWriter<W: Write> {
    zip: ZipWriter<StreamWriter<W>>,
    rows: u32,
    /// One row's XML, reused.
    line: String,
}

impl<W: Write> SheetWriter<W> {
    /// Writes the fixed parts of the package and opens the sheet.
    pub fn new(out: W) -> io::Result<Self> {
        let mut zip = ZipWriter::new_stream(out);
        // Level 1: a million rows deflate in a fraction of the time of the default level, for a
        // file about a fifth larger.
        let options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .compression_level(Some(1));
        for (name, text) in [
            ("[Content_Types].xml", CONTENT_TYPES),
            ("_rels/.rels", PACKAGE_RELS),
            ("xl/workbook.xml", WORKBOOK),
            ("xl/_rels/workbook.xml.rels", WORKBOOK_RELS),
            ("xl/styles.xml", STYLES),
        ] {
            zip.start_file(name, options).map_err(io::Error::other)?;
            zip.write_all(text.as_bytes())?;
        }
        zip.start_file("xl/worksheets/sheet1.xml", options)
            .map_err(io::Error::other)?;
        zip.write_all(SHEET_START.as_bytes())?;
        Ok(SheetWriter {
            zip,
            rows: 0,
            line: String::new(),
        })
    }

    /// Appends the next row; refused past Excel's [`MAX_ROWS`].
    pub fn row<'a>(&mut self, cells: impl IntoIterator<Item = Cell<'a>>) -> io::Result<()> {
        use std::fmt::Write as _;
        if self.rows >= MAX_ROWS {
            return Err(io::Error::other(format!(
                "a sheet holds at most {MAX_ROWS} rows"
            )));
        }
        self.rows += 1;
        let row = self.rows;
        let line = &mut self.line;
        line.clear();
        let _ = write!(line, r#"<row r="{row}">"#);
        for (column, cell) in cells.into_iter().enumerate() {
            let reference = CellRef { column, row };
            match cell {
                Cell::Empty => {}
                Cell::Number(value) if value.is_finite() => {
                    let _ = write!(line, r#"<c r="{reference}"><v>{value}</v></c>"#);
                }
                Cell::Number(_) => {}
                Cell::Text(text) => {
                    let _ = write!(
                        line,
                        r#"<c r="{reference}" t="inlineStr"><is><t xml:space="preserve">"#
                    );
                    escape_into(line, &text);
                    line.push_str("</t></is></c>");
                }
            }
        }
        line.push_str("</row>");
        self.zip.write_all(line.as_bytes())
    }

    /// Closes the sheet and the zip; answers the writer it wrote into.
    pub fn finish(mut self) -> io::Result<W> {
        self.zip.write_all(SHEET_END.as_bytes())?;
        let stream = self.zip.finish().map_err(io::Error::other)?;
        Ok(stream.into_inner())
    }
}

/// A cell's A1 reference: column letters, then the row.
struct CellRef {
    column: usize,
    row: u32,
}

impl std::fmt::Display for CellRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut letters = [0u8; 3];
        let mut start = letters.len();
        let mut n = self.column + 1;
        while n > 0 && start > 0 {
            start -= 1;
            letters[start] = b'A' + ((n - 1) % 26) as u8;
            n = (n - 1) / 26;
        }
        let letters = std::str::from_utf8(&letters[start..]).expect("ASCII letters");
        write!(f, "{letters}{}", self.row)
    }
}

/// XML text: markup escaped, and the characters XML 1.0 cannot carry (controls other than tab,
/// line feed and carriage return) dropped.
fn escape_into(out: &mut String, text: &str) {
    for character in text.chars() {
        match character {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\t' | '\n' | '\r' => out.push(character),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use calamine::{Data, Reader, Xlsx};

    fn read_back(bytes: Vec<u8>) -> Vec<Vec<Data>> {
        let mut workbook = Xlsx::new(std::io::Cursor::new(bytes)).expect("a workbook");
        let range = workbook.worksheet_range_at(0).expect("a sheet").expect("readable");
        range.rows().map(|row| row.to_vec()).collect()
    }

    #[test]
    fn cell_references() {
        let name = |column, row| CellRef { column, row }.to_string();
        assert_eq!(name(0, 1), "A1");
        assert_eq!(name(9, 2), "J2");
        assert_eq!(name(25, 3), "Z3");
        assert_eq!(name(26, 4), "AA4");
        assert_eq!(name(701, 5), "ZZ5");
        assert_eq!(name(702, 6), "AAA6");
        assert_eq!(name(16_383, 7), "XFD7");
    }

    #[test]
    fn rows_read_back_as_written() {
        let mut sheet = SheetWriter::new(Vec::new()).unwrap();
        sheet
            .row([Cell::Text("号码".into()), Cell::Text("秒".into()), Cell::Text("x".into())])
            .unwrap();
        sheet
            .row([
                Cell::Text("<a & b>\u{1}\ttab".into()),
                Cell::Number(42.0),
                Cell::Empty,
                Cell::Text("  spaced  ".into()),
            ])
            .unwrap();
        let rows = read_back(sheet.finish().unwrap());
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0][0], Data::String("号码".into()));
        assert_eq!(rows[1][0], Data::String("<a & b>\ttab".into()));
        assert_eq!(rows[1][1], Data::Float(42.0));
        assert_eq!(rows[1][2], Data::Empty);
        assert_eq!(rows[1][3], Data::String("  spaced  ".into()));
    }

    /// Bytes leave as rows are written: the writer never holds the sheet.
    #[test]
    fn output_grows_while_rows_are_written() {
        let mut sheet = SheetWriter::new(Vec::new()).unwrap();
        let mut sizes = Vec::new();
        for row in 0..20_000 {
            let text = format!("13800{row:06}");
            sheet
                .row([Cell::Text(text.as_str().into()), Cell::Number(row as f64)])
                .unwrap();
            if row % 5_000 == 4_999 {
                sizes.push(sheet.zip.get_ref().expect("open").get_ref().len());
            }
        }
        assert!(
            sizes.windows(2).all(|pair| pair[1] > pair[0]),
            "the output grew with the rows: {sizes:?}"
        );
        let rows = read_back(sheet.finish().unwrap());
        assert_eq!(rows.len(), 20_000);
        assert_eq!(rows[19_999][0], Data::String("13800019999".into()));
    }
}
