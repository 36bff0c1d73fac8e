//! A GGUF v3 writer: test models, and pruned copies of real files (tensors copied as
//! stored, straight from the input's memory map).

use crate::reader::align_up;
use crate::*;
use std::fs::{self, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Clone)]
pub(crate) struct WriterTensor {
    name: String,
    dims: Vec<u64>,
    dtype: GgmlType,
    data: TensorBytes,
}

/// Builds a GGUF v3 file (metadata + tensors) and writes it atomically.
///
/// Tensor data is held as [`TensorBytes`]: bytes encoded here stay in memory, tensors copied
/// from another file ([`GgufWriter::add_tensor_bytes`]) are read from its memory map only
/// while [`GgufWriter::write_to`] streams them out. Metadata keys keep insertion order;
/// adding an existing key replaces its value.
#[derive(Debug, Clone, Default)]
pub struct GgufWriter {
    metadata: Vec<(String, GgufValue)>,
    tensors: Vec<WriterTensor>,
}

impl GgufWriter {
    /// An empty writer (no metadata, no tensors, alignment 32).
    pub fn new() -> GgufWriter {
        GgufWriter::default()
    }

    /// Adds (or replaces) metadata `key` with `value`. Array values must have elements of
    /// their declared element type (checked when writing).
    pub fn add(&mut self, key: &str, value: GgufValue) -> &mut Self {
        match self.metadata.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.metadata.push((key.to_string(), value)),
        }
        self
    }

    /// Adds a `u8` value.
    pub fn add_u8(&mut self, key: &str, v: u8) -> &mut Self {
        self.add(key, GgufValue::U8(v))
    }

    /// Adds an `i8` value.
    pub fn add_i8(&mut self, key: &str, v: i8) -> &mut Self {
        self.add(key, GgufValue::I8(v))
    }

    /// Adds a `u16` value.
    pub fn add_u16(&mut self, key: &str, v: u16) -> &mut Self {
        self.add(key, GgufValue::U16(v))
    }

    /// Adds an `i16` value.
    pub fn add_i16(&mut self, key: &str, v: i16) -> &mut Self {
        self.add(key, GgufValue::I16(v))
    }

    /// Adds a `u32` value.
    pub fn add_u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.add(key, GgufValue::U32(v))
    }

    /// Adds an `i32` value.
    pub fn add_i32(&mut self, key: &str, v: i32) -> &mut Self {
        self.add(key, GgufValue::I32(v))
    }

    /// Adds a `u64` value.
    pub fn add_u64(&mut self, key: &str, v: u64) -> &mut Self {
        self.add(key, GgufValue::U64(v))
    }

    /// Adds an `i64` value.
    pub fn add_i64(&mut self, key: &str, v: i64) -> &mut Self {
        self.add(key, GgufValue::I64(v))
    }

    /// Adds an `f32` value.
    pub fn add_f32(&mut self, key: &str, v: f32) -> &mut Self {
        self.add(key, GgufValue::F32(v))
    }

    /// Adds an `f64` value.
    pub fn add_f64(&mut self, key: &str, v: f64) -> &mut Self {
        self.add(key, GgufValue::F64(v))
    }

    /// Adds a `bool` value.
    pub fn add_bool(&mut self, key: &str, v: bool) -> &mut Self {
        self.add(key, GgufValue::Bool(v))
    }

    /// Adds a string value.
    pub fn add_string(&mut self, key: &str, v: &str) -> &mut Self {
        self.add(key, GgufValue::String(v.to_string()))
    }

    /// Adds an array value whose elements all have type `elem_type`.
    pub fn add_array(
        &mut self,
        key: &str,
        elem_type: GgufValueType,
        values: Vec<GgufValue>,
    ) -> &mut Self {
        self.add(key, GgufValue::Array(elem_type, values))
    }

    /// Adds an `array<string>` value.
    pub fn add_str_array<S: AsRef<str>>(&mut self, key: &str, values: &[S]) -> &mut Self {
        let v = values
            .iter()
            .map(|s| GgufValue::String(s.as_ref().to_string()))
            .collect();
        self.add_array(key, GgufValueType::String, v)
    }

    /// Adds an `array<f32>` value.
    pub fn add_f32_array(&mut self, key: &str, values: &[f32]) -> &mut Self {
        let v = values.iter().map(|&x| GgufValue::F32(x)).collect();
        self.add_array(key, GgufValueType::F32, v)
    }

    /// Adds an `array<i32>` value.
    pub fn add_i32_array(&mut self, key: &str, values: &[i32]) -> &mut Self {
        let v = values.iter().map(|&x| GgufValue::I32(x)).collect();
        self.add_array(key, GgufValueType::I32, v)
    }

    /// Adds an `array<u32>` value.
    pub fn add_u32_array(&mut self, key: &str, values: &[u32]) -> &mut Self {
        let v = values.iter().map(|&x| GgufValue::U32(x)).collect();
        self.add_array(key, GgufValueType::U32, v)
    }

    /// Sets the data alignment (stored as the `general.alignment` u32 key); must be a power
    /// of two.
    pub fn set_alignment(&mut self, alignment: u32) -> Result<&mut Self, GgufError> {
        if !alignment.is_power_of_two() {
            return Err(GgufError::InvalidInput(format!(
                "alignment {alignment} is not a power of two"
            )));
        }
        Ok(self.add_u32(ALIGNMENT_KEY, alignment))
    }

    /// Adds tensor `name` with ggml-order `dims` (`[ne0, ne1, ...]`, fastest-varying first)
    /// from `data` in storage order (for `[ne0, ne1]`: `ne1` rows of `ne0` values), encoded
    /// as `dtype` (F32, F16, BF16, Q8_0, Q4_0 or Q4_1; `ne0` must be a multiple of the block
    /// size).
    pub fn add_tensor(
        &mut self,
        name: &str,
        dims: &[u64],
        data: &[f32],
        dtype: GgmlType,
    ) -> Result<&mut Self, GgufError> {
        let n = check_dims(name, dims, dtype)?;
        if n != data.len() as u64 {
            return Err(GgufError::InvalidInput(format!(
                "tensor `{name}` has dims {dims:?} ({n} elements) but {} values were given",
                data.len()
            )));
        }
        let bytes = quantize(dtype, data).map_err(|e| match e {
            GgufError::UnsupportedTensorType { dtype, .. } => GgufError::UnsupportedTensorType {
                tensor: name.to_string(),
                dtype,
            },
            other => other,
        })?;
        self.push_tensor(name, dims, dtype, TensorBytes::from_vec(bytes))
    }

    /// Adds tensor `name` from already-encoded ggml bytes of any known type (e.g. hand-built
    /// k-quant blocks). `bytes.len()` must match `dims` and `dtype`.
    pub fn add_tensor_raw(
        &mut self,
        name: &str,
        dims: &[u64],
        dtype: GgmlType,
        bytes: Vec<u8>,
    ) -> Result<&mut Self, GgufError> {
        self.add_tensor_bytes(name, dims, dtype, TensorBytes::from_vec(bytes))
    }

    /// Adds tensor `name` from a shared handle on ggml bytes (e.g. a tensor of an open
    /// [`GgufFile`], from [`GgufFile::tensor_bytes_shared`]), without copying them.
    pub fn add_tensor_bytes(
        &mut self,
        name: &str,
        dims: &[u64],
        dtype: GgmlType,
        bytes: TensorBytes,
    ) -> Result<&mut Self, GgufError> {
        let n = check_dims(name, dims, dtype)?;
        let need = dtype.bytes_for(n);
        if need != Some(bytes.bytes().len() as u64) {
            return Err(GgufError::InvalidInput(format!(
                "tensor `{name}`: dims {dims:?} of {dtype} need {need:?} bytes, got {}",
                bytes.bytes().len()
            )));
        }
        self.push_tensor(name, dims, dtype, bytes)
    }

    fn push_tensor(
        &mut self,
        name: &str,
        dims: &[u64],
        dtype: GgmlType,
        data: TensorBytes,
    ) -> Result<&mut Self, GgufError> {
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(GgufError::InvalidInput(format!(
                "tensor `{name}` was added twice"
            )));
        }
        self.tensors.push(WriterTensor {
            name: name.to_string(),
            dims: dims.to_vec(),
            dtype,
            data,
        });
        Ok(self)
    }

    /// Serialises the file (GGUF v3) to bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, GgufError> {
        let mut out = Vec::new();
        self.write_into(&mut out).map_err(|e| match e {
            WriteError::Format(e) => e,
            WriteError::Io(e) => GgufError::InvalidInput(format!("writing to memory: {e}")),
        })?;
        Ok(out)
    }

    fn alignment(&self) -> Result<u64, GgufError> {
        match self.metadata.iter().find(|(k, _)| k == ALIGNMENT_KEY) {
            None => Ok(DEFAULT_ALIGNMENT),
            Some((_, v)) => v.as_u64().filter(|a| a.is_power_of_two()).ok_or_else(|| {
                GgufError::InvalidInput(format!("`{ALIGNMENT_KEY}` must be a power-of-two integer"))
            }),
        }
    }

    /// Streams the file into `out`: the header (built in memory), then each tensor's bytes.
    fn write_into<W: Write>(&self, out: &mut W) -> Result<(), WriteError> {
        let alignment = self.alignment()?;
        let mut header = Vec::new();
        header.extend_from_slice(&GGUF_MAGIC);
        header.extend_from_slice(&3u32.to_le_bytes());
        header.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        header.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            put_str(&mut header, key);
            header.extend_from_slice(&value.value_type().id().to_le_bytes());
            put_value(&mut header, key, value)?;
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            put_str(&mut header, &t.name);
            header.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                header.extend_from_slice(&d.to_le_bytes());
            }
            header.extend_from_slice(&t.dtype.id().to_le_bytes());
            header.extend_from_slice(&offset.to_le_bytes());
            offset = offset
                .checked_add(t.data.bytes().len() as u64)
                .and_then(|end| align_up(end, alignment))
                .ok_or_else(|| GgufError::InvalidInput("tensor data too large".to_string()))?;
        }
        pad_to(&mut header, alignment);
        out.write_all(&header)?;
        let zeros = vec![0u8; alignment as usize];
        for t in &self.tensors {
            let data = t.data.bytes();
            out.write_all(data)?;
            let pad = (alignment - data.len() as u64 % alignment) % alignment;
            out.write_all(&zeros[..pad as usize])?;
        }
        Ok(())
    }

    /// Writes the file to `path` atomically: the bytes stream to a temporary file in the
    /// same directory, which is synced and then renamed over `path`.
    pub fn write_to(&self, path: &Path) -> Result<(), GgufError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        // Format errors (bad metadata) surface before any file is created.
        self.alignment()?;
        let file_name = path.file_name().ok_or_else(|| {
            GgufError::InvalidInput(format!("{} has no file name", path.display()))
        })?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let tmp = dir.join(format!(
            ".{}.tmp-{}-{}",
            file_name.to_string_lossy(),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let io_error = |source| GgufError::Io {
            path: path.to_path_buf(),
            source,
        };
        let write = || -> Result<(), WriteError> {
            let file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            let mut buffered = BufWriter::with_capacity(1 << 20, file);
            self.write_into(&mut buffered)?;
            let file = buffered.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            drop(file);
            fs::rename(&tmp, path)?;
            Ok(())
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            match e {
                WriteError::Format(e) => e,
                WriteError::Io(e) => io_error(e),
            }
        })
    }
}

/// Why streaming a file out failed: the content (bad metadata) or the sink.
enum WriteError {
    Format(GgufError),
    Io(std::io::Error),
}

impl From<GgufError> for WriteError {
    fn from(e: GgufError) -> Self {
        WriteError::Format(e)
    }
}

impl From<std::io::Error> for WriteError {
    fn from(e: std::io::Error) -> Self {
        WriteError::Io(e)
    }
}

pub(crate) fn check_dims(name: &str, dims: &[u64], dtype: GgmlType) -> Result<u64, GgufError> {
    if dims.len() > MAX_DIMS {
        return Err(GgufError::InvalidInput(format!(
            "tensor `{name}` has {} dims (at most {MAX_DIMS})",
            dims.len()
        )));
    }
    let n = dims
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .ok_or_else(|| GgufError::InvalidInput(format!("tensor `{name}` dims overflow")))?;
    let ne0 = dims.first().copied().unwrap_or(1);
    if !ne0.is_multiple_of(dtype.block_size() as u64) {
        return Err(GgufError::InvalidInput(format!(
            "tensor `{name}`: ne0 = {ne0} is not a multiple of the {dtype} block size {}",
            dtype.block_size()
        )));
    }
    Ok(n)
}

pub(crate) fn pad_to(out: &mut Vec<u8>, alignment: u64) {
    let rem = (out.len() as u64) % alignment;
    if rem != 0 {
        out.resize(out.len() + (alignment - rem) as usize, 0);
    }
}

pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

pub(crate) fn put_value(out: &mut Vec<u8>, key: &str, v: &GgufValue) -> Result<(), GgufError> {
    match v {
        GgufValue::U8(x) => out.push(*x),
        GgufValue::I8(x) => out.extend(x.to_le_bytes()),
        GgufValue::U16(x) => out.extend(x.to_le_bytes()),
        GgufValue::I16(x) => out.extend(x.to_le_bytes()),
        GgufValue::U32(x) => out.extend(x.to_le_bytes()),
        GgufValue::I32(x) => out.extend(x.to_le_bytes()),
        GgufValue::F32(x) => out.extend(x.to_le_bytes()),
        GgufValue::Bool(x) => out.push(u8::from(*x)),
        GgufValue::String(s) => put_str(out, s),
        GgufValue::U64(x) => out.extend(x.to_le_bytes()),
        GgufValue::I64(x) => out.extend(x.to_le_bytes()),
        GgufValue::F64(x) => out.extend(x.to_le_bytes()),
        GgufValue::Array(t, items) => {
            out.extend(t.id().to_le_bytes());
            out.extend((items.len() as u64).to_le_bytes());
            for item in items {
                if item.value_type() != *t {
                    return Err(GgufError::InvalidInput(format!(
                        "metadata key `{key}`: array<{t}> contains a {} element",
                        item.type_name()
                    )));
                }
                put_value(out, key, item)?;
            }
        }
    }
    Ok(())
}
