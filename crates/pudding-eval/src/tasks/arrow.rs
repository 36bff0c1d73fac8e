//! A minimal reader for Arrow IPC *stream* files (the `data-00000-of-00001.arrow` files that
//! Hugging Face `datasets` writes with `save_to_disk`), enough for the task data: it decodes
//! every record batch into rows of [`serde_json::Value`]s, so the task builders see the same
//! shape that Python's `datasets` gives (`Sequence` of a dict becomes a dict of lists).
//!
//! Supported column types: Null, Bool, Int (8-64 bit, signed or not), FloatingPoint (32/64 bit),
//! Utf8, LargeUtf8, List, LargeList and Struct, with validity bitmaps. Anything else
//! (dictionary encoding, compressed bodies, unions, views, ...) is reported as an error
//! rather than guessed at. The flatbuffer metadata is walked by hand (no `flatbuffers` crate);
//! field numbers follow `Schema.fbs` / `Message.fbs` of the Arrow format.

use serde_json::{Map, Number, Value};

/// One decoded row: column name to value.
pub(crate) type Row = Map<String, Value>;

type Result<T> = std::result::Result<T, String>;

/// The most rows one record batch, one column node or a whole stream may declare. Task
/// splits have at most tens of thousands of rows; a larger count is a corrupt file,
/// refused before anything that size is allocated (a column of nulls costs no body
/// bytes, so the body's size alone would not bound it).
const MAX_BATCH_ROWS: usize = 1 << 20;

/// How deeply column types may nest (List of Struct of List ...). The schema is a graph of
/// offsets, so a corrupt file can make it cyclic; the limit turns that into an error.
const MAX_TYPE_DEPTH: usize = 32;

/// How many fields (columns and their nested children) a schema may declare. Offsets can
/// also point several children at one table, so a shallow corrupt schema could fan out
/// into billions of fields; real task files have a few dozen.
const MAX_SCHEMA_FIELDS: usize = 4096;

fn slice(buf: &[u8], pos: usize, len: usize) -> Result<&[u8]> {
    pos.checked_add(len)
        .and_then(|end| buf.get(pos..end))
        .ok_or_else(|| {
            format!(
                "read of {len} bytes at {pos} past the end ({} bytes)",
                buf.len()
            )
        })
}

fn le_u16(buf: &[u8], pos: usize) -> Result<u16> {
    let b = slice(buf, pos, 2)?;
    Ok(u16::from_le_bytes([b[0], b[1]]))
}

fn le_u32(buf: &[u8], pos: usize) -> Result<u32> {
    let b = slice(buf, pos, 4)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn le_i32(buf: &[u8], pos: usize) -> Result<i32> {
    Ok(le_u32(buf, pos)? as i32)
}

fn le_i64(buf: &[u8], pos: usize) -> Result<i64> {
    let b = slice(buf, pos, 8)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Ok(i64::from_le_bytes(a))
}

/// A flatbuffer table: its position and its vtable.
#[derive(Clone, Copy)]
struct Table<'a> {
    buf: &'a [u8],
    pos: usize,
    vtable: usize,
    vtable_len: usize,
}

impl<'a> Table<'a> {
    fn at(buf: &'a [u8], pos: usize) -> Result<Self> {
        let soffset = le_i32(buf, pos)? as i64;
        let vtable = usize::try_from(pos as i64 - soffset).map_err(|_| "bad vtable offset")?;
        let vtable_len = le_u16(buf, vtable)? as usize;
        Ok(Self {
            buf,
            pos,
            vtable,
            vtable_len,
        })
    }

    fn root(buf: &'a [u8]) -> Result<Self> {
        let pos = le_u32(buf, 0)? as usize;
        Self::at(buf, pos)
    }

    /// Absolute position of field `idx`, or `None` if absent (default value).
    fn field(&self, idx: usize) -> Result<Option<usize>> {
        let entry = 4 + 2 * idx;
        if entry + 2 > self.vtable_len {
            return Ok(None);
        }
        let off = le_u16(self.buf, self.vtable + entry)? as usize;
        Ok(if off == 0 { None } else { Some(self.pos + off) })
    }

    fn u8_field(&self, idx: usize, default: u8) -> Result<u8> {
        match self.field(idx)? {
            Some(p) => Ok(slice(self.buf, p, 1)?[0]),
            None => Ok(default),
        }
    }

    fn i16_field(&self, idx: usize, default: i16) -> Result<i16> {
        match self.field(idx)? {
            Some(p) => Ok(le_u16(self.buf, p)? as i16),
            None => Ok(default),
        }
    }

    fn i32_field(&self, idx: usize, default: i32) -> Result<i32> {
        match self.field(idx)? {
            Some(p) => le_i32(self.buf, p),
            None => Ok(default),
        }
    }

    fn i64_field(&self, idx: usize, default: i64) -> Result<i64> {
        match self.field(idx)? {
            Some(p) => le_i64(self.buf, p),
            None => Ok(default),
        }
    }

    fn indirect(&self, idx: usize) -> Result<Option<usize>> {
        match self.field(idx)? {
            Some(p) => Ok(Some(p + le_u32(self.buf, p)? as usize)),
            None => Ok(None),
        }
    }

    fn table(&self, idx: usize) -> Result<Option<Table<'a>>> {
        match self.indirect(idx)? {
            Some(p) => Ok(Some(Table::at(self.buf, p)?)),
            None => Ok(None),
        }
    }

    fn string(&self, idx: usize) -> Result<Option<&'a str>> {
        match self.indirect(idx)? {
            Some(p) => {
                let len = le_u32(self.buf, p)? as usize;
                let bytes = slice(self.buf, p + 4, len)?;
                std::str::from_utf8(bytes)
                    .map(Some)
                    .map_err(|e| format!("field name is not UTF-8: {e}"))
            }
            None => Ok(None),
        }
    }

    /// A vector field: (position of the first element, number of elements).
    fn vector(&self, idx: usize) -> Result<Option<(usize, usize)>> {
        match self.indirect(idx)? {
            Some(p) => Ok(Some((p + 4, le_u32(self.buf, p)? as usize))),
            None => Ok(None),
        }
    }

    fn tables(&self, idx: usize) -> Result<Vec<Table<'a>>> {
        let Some((start, len)) = self.vector(idx)? else {
            return Ok(Vec::new());
        };
        (0..len)
            .map(|i| {
                let p = start + 4 * i;
                Table::at(self.buf, p + le_u32(self.buf, p)? as usize)
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
enum DType {
    Null,
    Bool,
    Int { bits: i32, signed: bool },
    Float { double: bool },
    Utf8 { large: bool },
    List { large: bool, item: Box<FieldDef> },
    Struct(Vec<FieldDef>),
}

#[derive(Debug, Clone)]
struct FieldDef {
    name: String,
    dtype: DType,
}

// `Type` union tags (Schema.fbs).
const T_NULL: u8 = 1;
const T_INT: u8 = 2;
const T_FLOAT: u8 = 3;
const T_UTF8: u8 = 5;
const T_BOOL: u8 = 6;
const T_LIST: u8 = 12;
const T_STRUCT: u8 = 13;
const T_LARGE_UTF8: u8 = 20;
const T_LARGE_LIST: u8 = 21;

/// Parses one field and its children; `budget` is the number of fields the schema may
/// still declare ([`MAX_SCHEMA_FIELDS`] in all).
fn parse_field(t: &Table<'_>, depth: usize, budget: &mut usize) -> Result<FieldDef> {
    // Field: name 0, nullable 1, type_type 2, type 3, dictionary 4, children 5.
    let name = t.string(0)?.unwrap_or("").to_string();
    if depth > MAX_TYPE_DEPTH {
        return Err(format!(
            "column {name:?} nests types more than {MAX_TYPE_DEPTH} deep"
        ));
    }
    *budget = budget
        .checked_sub(1)
        .ok_or_else(|| format!("the schema declares more than {MAX_SCHEMA_FIELDS} fields"))?;
    if t.field(4)?.is_some() {
        return Err(format!(
            "column {name:?} is dictionary-encoded (unsupported)"
        ));
    }
    let tag = t.u8_field(2, 0)?;
    let children = t.tables(5)?;
    let mut child = |i: usize| -> Result<FieldDef> {
        children
            .get(i)
            .ok_or_else(|| format!("column {name:?} lacks child {i}"))
            .and_then(|c| parse_field(c, depth + 1, budget))
    };
    let dtype = match tag {
        T_NULL => DType::Null,
        T_BOOL => DType::Bool,
        T_INT => {
            let ty = t.table(3)?.ok_or("Int type without a table")?;
            let bits = ty.i32_field(0, 0)?;
            if ![8, 16, 32, 64].contains(&bits) {
                return Err(format!("column {name:?}: Int bit width {bits}"));
            }
            DType::Int {
                bits,
                signed: ty.u8_field(1, 0)? != 0,
            }
        }
        T_FLOAT => {
            let ty = t.table(3)?.ok_or("FloatingPoint type without a table")?;
            match ty.i16_field(0, 0)? {
                1 => DType::Float { double: false },
                2 => DType::Float { double: true },
                p => return Err(format!("column {name:?}: float precision {p} unsupported")),
            }
        }
        T_UTF8 => DType::Utf8 { large: false },
        T_LARGE_UTF8 => DType::Utf8 { large: true },
        T_LIST | T_LARGE_LIST => DType::List {
            large: tag == T_LARGE_LIST,
            item: Box::new(child(0)?),
        },
        T_STRUCT => DType::Struct(
            children
                .iter()
                .map(|c| parse_field(c, depth + 1, budget))
                .collect::<Result<Vec<_>>>()?,
        ),
        other => {
            return Err(format!(
                "column {name:?}: Arrow type tag {other} unsupported"
            ))
        }
    };
    Ok(FieldDef { name, dtype })
}

struct Batch<'a> {
    body: &'a [u8],
    nodes: Vec<(i64, i64)>,
    buffers: Vec<(i64, i64)>,
    next_node: usize,
    next_buffer: usize,
}

impl<'a> Batch<'a> {
    fn node(&mut self) -> Result<(usize, usize)> {
        let (len, nulls) = *self
            .nodes
            .get(self.next_node)
            .ok_or("record batch has fewer field nodes than the schema needs")?;
        self.next_node += 1;
        let len = usize::try_from(len).map_err(|_| "negative node length")?;
        if len > MAX_BATCH_ROWS {
            return Err(format!(
                "a column node declares {len} values (more than {MAX_BATCH_ROWS})"
            ));
        }
        let nulls = usize::try_from(nulls).map_err(|_| "negative null count")?;
        Ok((len, nulls))
    }

    fn buffer(&mut self) -> Result<&'a [u8]> {
        let (off, len) = *self
            .buffers
            .get(self.next_buffer)
            .ok_or("record batch has fewer buffers than the schema needs")?;
        self.next_buffer += 1;
        let off = usize::try_from(off).map_err(|_| "negative buffer offset")?;
        let len = usize::try_from(len).map_err(|_| "negative buffer length")?;
        slice(self.body, off, len)
    }
}

fn is_valid(bitmap: &[u8], nulls: usize, i: usize) -> Result<bool> {
    if nulls == 0 {
        return Ok(true);
    }
    let byte = bitmap
        .get(i / 8)
        .ok_or("validity bitmap shorter than the column")?;
    Ok(byte >> (i % 8) & 1 == 1)
}

fn offsets(buf: &[u8], len: usize, large: bool) -> Result<Vec<usize>> {
    (0..=len)
        .map(|i| {
            let v = if large {
                le_i64(buf, 8 * i)?
            } else {
                le_i32(buf, 4 * i)? as i64
            };
            usize::try_from(v).map_err(|_| "negative offset".to_string())
        })
        .collect()
}

fn decode(field: &FieldDef, batch: &mut Batch<'_>) -> Result<Vec<Value>> {
    let (len, nulls) = batch.node()?;
    if let DType::Null = field.dtype {
        return Ok(vec![Value::Null; len]);
    }
    let validity = batch.buffer()?;
    // Each value is checked against its buffers as it is read; reserve modestly up front.
    let mut out = Vec::with_capacity(len.min(1 << 16));
    match &field.dtype {
        DType::Null => unreachable!(),
        DType::Bool => {
            let data = batch.buffer()?;
            for i in 0..len {
                out.push(if is_valid(validity, nulls, i)? {
                    Value::Bool(is_valid(data, 1, i)?)
                } else {
                    Value::Null
                });
            }
        }
        DType::Int { bits, signed } => {
            let data = batch.buffer()?;
            let width = (*bits / 8) as usize;
            for i in 0..len {
                if !is_valid(validity, nulls, i)? {
                    out.push(Value::Null);
                    continue;
                }
                let b = slice(data, i * width, width)?;
                let mut a = [0u8; 8];
                a[..width].copy_from_slice(b);
                let raw = u64::from_le_bytes(a);
                let n = if *signed {
                    let shift = 64 - 8 * width as u32;
                    Number::from(((raw << shift) as i64) >> shift)
                } else {
                    Number::from(raw)
                };
                out.push(Value::Number(n));
            }
        }
        DType::Float { double } => {
            let data = batch.buffer()?;
            for i in 0..len {
                if !is_valid(validity, nulls, i)? {
                    out.push(Value::Null);
                    continue;
                }
                let v = if *double {
                    f64::from_bits(le_i64(data, 8 * i)? as u64)
                } else {
                    f32::from_bits(le_u32(data, 4 * i)?) as f64
                };
                out.push(Number::from_f64(v).map_or(Value::Null, Value::Number));
            }
        }
        DType::Utf8 { large } => {
            let offs = offsets(batch.buffer()?, len, *large)?;
            let data = batch.buffer()?;
            for i in 0..len {
                if !is_valid(validity, nulls, i)? {
                    out.push(Value::Null);
                    continue;
                }
                let bytes = data
                    .get(offs[i]..offs[i + 1])
                    .ok_or("string offsets out of range")?;
                let s = std::str::from_utf8(bytes)
                    .map_err(|e| format!("column {:?} row {i}: not UTF-8: {e}", field.name))?;
                out.push(Value::String(s.to_string()));
            }
        }
        DType::List { large, item } => {
            let offs = offsets(batch.buffer()?, len, *large)?;
            let mut values = decode(item, batch)?.into_iter();
            let mut consumed = offs.first().copied().unwrap_or(0);
            if consumed > values.len() {
                return Err(format!(
                    "column {:?}: first list offset {consumed} past the {} child values",
                    field.name,
                    values.len()
                ));
            }
            // Skip any leading child values before the first offset.
            if consumed > 0 {
                values.nth(consumed - 1);
            }
            for i in 0..len {
                let (start, end) = (offs[i], offs[i + 1]);
                if start != consumed || end < start {
                    return Err(format!(
                        "column {:?}: non-monotonic list offsets",
                        field.name
                    ));
                }
                let elems: Vec<Value> = values.by_ref().take(end - start).collect();
                if elems.len() != end - start {
                    return Err(format!("column {:?}: list offsets past child", field.name));
                }
                consumed = end;
                out.push(if is_valid(validity, nulls, i)? {
                    Value::Array(elems)
                } else {
                    Value::Null
                });
            }
        }
        DType::Struct(children) => {
            let cols = children
                .iter()
                .map(|c| decode(c, batch).map(|v| (c.name.clone(), v)))
                .collect::<Result<Vec<_>>>()?;
            let mut iters: Vec<_> = cols.into_iter().map(|(n, v)| (n, v.into_iter())).collect();
            for i in 0..len {
                let mut obj = Map::new();
                for (name, it) in iters.iter_mut() {
                    obj.insert(name.clone(), it.next().ok_or("struct child too short")?);
                }
                out.push(if is_valid(validity, nulls, i)? {
                    Value::Object(obj)
                } else {
                    Value::Null
                });
            }
        }
    }
    Ok(out)
}

/// Decodes a whole Arrow IPC stream into rows (all record batches, in order).
pub(crate) fn read_stream(bytes: &[u8]) -> Result<Vec<Row>> {
    let mut pos = 0usize;
    let mut schema: Option<Vec<FieldDef>> = None;
    let mut rows = Vec::new();
    let mut ended = false;
    while pos + 4 <= bytes.len() {
        let mut meta_len = le_i32(bytes, pos)?;
        pos += 4;
        if meta_len == -1 {
            // Continuation marker (format >= 0.15), then the real length.
            meta_len = le_i32(bytes, pos)?;
            pos += 4;
        }
        if meta_len == 0 {
            ended = true; // end-of-stream marker
            break;
        }
        let meta_len = usize::try_from(meta_len).map_err(|_| "negative metadata length")?;
        let meta = slice(bytes, pos, meta_len)?;
        pos += meta_len;
        // Message: version 0, header_type 1, header 2, bodyLength 3, custom_metadata 4.
        let msg = Table::root(meta)?;
        let header_type = msg.u8_field(1, 0)?;
        let header = msg.table(2)?.ok_or("message without a header")?;
        let body_len = usize::try_from(msg.i64_field(3, 0)?).map_err(|_| "negative body length")?;
        let body = slice(bytes, pos, body_len)?;
        pos += body_len;
        match header_type {
            1 => {
                // Schema: endianness 0, fields 1.
                if header.i16_field(0, 0)? != 0 {
                    return Err("big-endian Arrow data is unsupported".into());
                }
                let mut budget = MAX_SCHEMA_FIELDS;
                let fields = header
                    .tables(1)?
                    .iter()
                    .map(|f| parse_field(f, 0, &mut budget))
                    .collect::<Result<Vec<_>>>()?;
                schema = Some(fields);
            }
            3 => {
                let fields = schema.as_ref().ok_or("record batch before the schema")?;
                // RecordBatch: length 0, nodes 1, buffers 2, compression 3.
                if header.field(3)?.is_some() {
                    return Err("compressed record batches are unsupported".into());
                }
                let n_rows = usize::try_from(header.i64_field(0, 0)?)
                    .map_err(|_| "negative record batch length")?;
                if rows.len().saturating_add(n_rows) > MAX_BATCH_ROWS {
                    return Err(format!(
                        "a record batch declares {n_rows} rows after {} (more than {MAX_BATCH_ROWS} in all)",
                        rows.len()
                    ));
                }
                let structs = |idx: usize| -> Result<Vec<(i64, i64)>> {
                    let Some((start, len)) = header.vector(idx)? else {
                        return Ok(Vec::new());
                    };
                    (0..len)
                        .map(|i| {
                            Ok((
                                le_i64(meta, start + 16 * i)?,
                                le_i64(meta, start + 16 * i + 8)?,
                            ))
                        })
                        .collect()
                };
                let mut batch = Batch {
                    body,
                    nodes: structs(1)?,
                    buffers: structs(2)?,
                    next_node: 0,
                    next_buffer: 0,
                };
                let mut columns = Vec::with_capacity(fields.len());
                for f in fields {
                    let col = decode(f, &mut batch)?;
                    if col.len() != n_rows {
                        return Err(format!(
                            "column {:?} has {} rows, batch says {n_rows}",
                            f.name,
                            col.len()
                        ));
                    }
                    columns.push((f.name.clone(), col.into_iter()));
                }
                for _ in 0..n_rows {
                    let mut row = Map::new();
                    for (name, it) in columns.iter_mut() {
                        row.insert(name.clone(), it.next().unwrap_or(Value::Null));
                    }
                    rows.push(row);
                }
            }
            2 => return Err("dictionary batches are unsupported".into()),
            other => return Err(format!("unexpected message header type {other}")),
        }
    }
    if schema.is_none() {
        return Err("stream has no schema message".into());
    }
    if !ended {
        // A writer that closed the stream left the marker; without it the file was cut,
        // possibly between two record batches, and reading on would lose rows silently.
        return Err(format!(
            "stream ends without its end-of-stream marker after {pos} of {} bytes (truncated?)",
            bytes.len()
        ));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by pyarrow (`scripts/reference/arrow_fixture.py`): every supported column
    /// type, with nulls, in two record batches.
    const FIXTURE: &[u8] = include_bytes!("../../tests/fixtures/arrow_types.arrow");
    const EXPECTED: &str = include_str!("../../tests/fixtures/arrow_types.json");

    fn expected() -> Value {
        serde_json::from_str(EXPECTED).expect("fixture JSON")
    }

    #[test]
    fn decodes_every_supported_type_as_pyarrow_does() {
        let rows = read_stream(FIXTURE).expect("fixture decodes");
        let want = expected();
        let want_rows = want["rows"].as_array().expect("rows");
        assert_eq!(rows.len(), want_rows.len());
        for (i, (got, want)) in rows.iter().zip(want_rows).enumerate() {
            assert_eq!(&Value::Object(got.clone()), want, "row {i}");
        }
    }

    #[test]
    fn a_stream_cut_between_batches_or_anywhere_is_an_error() {
        let want = expected();
        let cut = want["second_batch_offset"].as_u64().expect("offset") as usize;
        assert!(cut > 0 && cut < FIXTURE.len());
        let err = read_stream(&FIXTURE[..cut]).expect_err("cut between batches");
        assert!(err.contains("end-of-stream"), "{err}");
        // Every other cut point is refused too, never read short and never a panic.
        for len in 0..FIXTURE.len() {
            assert!(
                read_stream(&FIXTURE[..len]).is_err(),
                "cut at {len} accepted"
            );
        }
    }

    /// Offsets of every 16-byte (i64 length, i64 nulls) pair equal to `(len, nulls)`.
    fn find_pairs(bytes: &[u8], len: i64, nulls: i64) -> Vec<usize> {
        let mut pattern = len.to_le_bytes().to_vec();
        pattern.extend_from_slice(&nulls.to_le_bytes());
        bytes
            .windows(16)
            .enumerate()
            .filter(|(_, w)| *w == pattern.as_slice())
            .map(|(i, _)| i)
            .collect()
    }

    #[test]
    fn absurd_row_counts_are_refused_before_allocating() {
        // The first batch's "nothing" column node is (3 values, 3 nulls): declare 2^40.
        let at = find_pairs(FIXTURE, 3, 3);
        assert!(!at.is_empty(), "node not found in the fixture");
        let mut bytes = FIXTURE.to_vec();
        bytes[at[0]..at[0] + 8].copy_from_slice(&(1i64 << 40).to_le_bytes());
        let err = read_stream(&bytes).expect_err("huge node");
        assert!(err.contains("declares"), "{err}");
    }

    /// An Arrow stream holding only a schema whose first column is a chain of `levels`
    /// structs, each listing the next field twice as its children (a DAG: 2^levels
    /// fields to walk), ending in a Null field; then the end-of-stream marker.
    fn fan_out_stream(levels: usize) -> Vec<u8> {
        // A table: its vtable (field index -> offset in the table), then `size` bytes whose
        // first four are the signed offset back to the vtable. Returns the table position.
        fn table(b: &mut Vec<u8>, n_fields: usize, entries: &[(usize, u16)], size: usize) -> usize {
            let vtable = b.len();
            b.extend_from_slice(&((4 + 2 * n_fields) as u16).to_le_bytes());
            b.extend_from_slice(&(size as u16).to_le_bytes());
            for i in 0..n_fields {
                let off = entries.iter().find(|(j, _)| *j == i).map_or(0, |(_, o)| *o);
                b.extend_from_slice(&off.to_le_bytes());
            }
            let pos = b.len();
            b.extend_from_slice(&((pos - vtable) as i32).to_le_bytes());
            b.resize(pos + size, 0);
            pos
        }
        // Offsets are unsigned and relative to where they are stored: always forward.
        fn point(b: &mut [u8], at: usize, target: usize) {
            b[at..at + 4].copy_from_slice(&((target - at) as u32).to_le_bytes());
        }
        fn vector(b: &mut Vec<u8>, len: usize) -> usize {
            let pos = b.len();
            b.extend_from_slice(&(len as u32).to_le_bytes());
            b.resize(pos + 4 + 4 * len, 0);
            pos
        }
        let mut meta = vec![0u8; 4];
        // Message: header_type (1) = Schema at +4, header (2) at +8.
        let message = table(&mut meta, 4, &[(1, 4), (2, 8)], 12);
        meta[message + 4] = 1;
        point(&mut meta, 0, message);
        // Schema: fields (1) at +4.
        let schema = table(&mut meta, 2, &[(1, 4)], 8);
        point(&mut meta, message + 8, schema);
        let fields = vector(&mut meta, 1);
        point(&mut meta, schema + 4, fields);
        let mut pending = vec![fields + 4];
        for level in 0..=levels {
            // Field: type_type (2) at +4, children (5) at +8.
            let leaf = level == levels;
            let field = if leaf {
                table(&mut meta, 6, &[(2, 4)], 8)
            } else {
                table(&mut meta, 6, &[(2, 4), (5, 8)], 12)
            };
            meta[field + 4] = if leaf { T_NULL } else { T_STRUCT };
            for at in pending.drain(..) {
                point(&mut meta, at, field);
            }
            if !leaf {
                let children = vector(&mut meta, 2);
                point(&mut meta, field + 8, children);
                pending = vec![children + 4, children + 8];
            }
        }
        let mut stream = (-1i32).to_le_bytes().to_vec();
        stream.extend_from_slice(&(meta.len() as i32).to_le_bytes());
        stream.extend_from_slice(&meta);
        stream.extend_from_slice(&(-1i32).to_le_bytes());
        stream.extend_from_slice(&0i32.to_le_bytes());
        stream
    }

    #[test]
    fn a_schema_that_fans_out_is_refused_not_walked() {
        // A few levels are a valid (if odd) schema with no rows.
        assert_eq!(
            read_stream(&fan_out_stream(3)).expect("small schema"),
            Vec::<Row>::new()
        );
        // 31 levels (2^31 fields) stay within the depth limit; the field budget stops them.
        let err = read_stream(&fan_out_stream(31)).expect_err("fan-out schema");
        assert!(err.contains("more than 4096 fields"), "{err}");
    }

    #[test]
    fn every_single_byte_corruption_is_an_error_or_a_decode_never_a_panic() {
        for pos in 0..FIXTURE.len() {
            for value in [0x00, 0x7f, 0xff] {
                let mut bytes = FIXTURE.to_vec();
                bytes[pos] = value;
                let _ = read_stream(&bytes);
            }
        }
    }
}
