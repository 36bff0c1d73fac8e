//! The GGUF container reader: header, metadata, tensor directory, tensor bytes.

use crate::dequant::dequantize_impl;
use crate::error::truncated;
use crate::*;
use memmap2::Mmap;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

/// Description of one tensor stored in a GGUF file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufTensorInfo {
    /// Tensor name (e.g. `blk.0.attn_q.weight`).
    pub name: String,
    /// Dimensions in ggml order, fastest-varying first: `[ne0, ne1, ...]`. A matrix with
    /// `dims == [ne0, ne1]` has `ne1` rows of `ne0` contiguous elements.
    pub dims: Vec<u64>,
    /// Storage type.
    pub dtype: GgmlType,
    /// Byte offset of the data relative to the start of the data section
    /// ([`GgufFile::data_offset`]).
    pub offset: u64,
}

impl GgufTensorInfo {
    /// Shape in row-major (numpy / PyTorch) order: `dims` reversed, slowest-varying first.
    /// For `dims == [ne0, ne1]` this is `[ne1, ne0]` (rows, columns).
    pub fn shape_row_major(&self) -> Vec<usize> {
        self.dims
            .iter()
            .rev()
            .map(|&d| usize::try_from(d).unwrap_or(usize::MAX))
            .collect()
    }

    /// Number of elements (product of `dims`, 1 for a scalar; saturates on overflow, which
    /// cannot happen for tensors of a successfully opened file).
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().fold(1u64, |acc, &d| acc.saturating_mul(d))
    }

    /// Number of bytes of the tensor data (`n_elements / block_size * bytes_per_block`;
    /// saturates on overflow).
    pub fn n_bytes(&self) -> u64 {
        (self.n_elements() / self.dtype.block_size() as u64)
            .saturating_mul(self.dtype.bytes_per_block() as u64)
    }
}

// ---------------------------------------------------------------------------------------------
// Reader
// ---------------------------------------------------------------------------------------------

/// Bounds-checked little-endian reader over a byte slice.
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Metadata values parsed so far (bounded by [`MAX_METADATA_VALUES`]).
    values: u64,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], GgufError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or_else(|| truncated(what, self.pos))?;
        let bytes = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| truncated(what, self.pos))?;
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], GgufError> {
        let start = self.pos;
        let bytes = self.take(N, what)?;
        <[u8; N]>::try_from(bytes).map_err(|_| truncated(what, start))
    }

    fn u8(&mut self, what: &str) -> Result<u8, GgufError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        self.array(what).map(u64::from_le_bytes)
    }

    fn string(&mut self, what: &str) -> Result<String, GgufError> {
        let start = self.pos;
        let len = self.u64(what)?;
        let len = usize::try_from(len).map_err(|_| truncated(what, start))?;
        let bytes = self.take(len, what).map_err(|_| truncated(what, start))?;
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    fn value(&mut self, ty: GgufValueType, depth: usize) -> Result<GgufValue, GgufError> {
        use GgufValueType as T;
        Ok(match ty {
            T::U8 => GgufValue::U8(self.u8("u8 value")?),
            T::I8 => GgufValue::I8(i8::from_le_bytes(self.array("i8 value")?)),
            T::U16 => GgufValue::U16(u16::from_le_bytes(self.array("u16 value")?)),
            T::I16 => GgufValue::I16(i16::from_le_bytes(self.array("i16 value")?)),
            T::U32 => GgufValue::U32(self.u32("u32 value")?),
            T::I32 => GgufValue::I32(i32::from_le_bytes(self.array("i32 value")?)),
            T::F32 => GgufValue::F32(f32::from_le_bytes(self.array("f32 value")?)),
            T::Bool => GgufValue::Bool(self.u8("bool value")? != 0),
            T::String => GgufValue::String(self.string("string value")?),
            T::U64 => GgufValue::U64(self.u64("u64 value")?),
            T::I64 => GgufValue::I64(i64::from_le_bytes(self.array("i64 value")?)),
            T::F64 => GgufValue::F64(f64::from_le_bytes(self.array("f64 value")?)),
            T::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(GgufError::Corrupt(format!(
                        "arrays nested more than {MAX_ARRAY_DEPTH} levels deep"
                    )));
                }
                let type_pos = self.pos;
                let elem_id = self.u32("array element type")?;
                let elem = GgufValueType::from_id(elem_id).ok_or_else(|| {
                    GgufError::Corrupt(format!(
                        "unknown array element type id {elem_id} at byte offset {type_pos}"
                    ))
                })?;
                let count_pos = self.pos;
                let count = self.u64("array length")?;
                // Every element needs at least `min_encoded_size` bytes: reject impossible
                // counts before looping or allocating.
                let fits = count
                    .checked_mul(elem.min_encoded_size() as u64)
                    .is_some_and(|need| need <= self.remaining() as u64);
                if !fits {
                    return Err(GgufError::Truncated {
                        what: format!("{count} array elements of type {elem}"),
                        offset: count_pos as u64,
                    });
                }
                // Fitting the file is not enough: each element costs a `GgufValue` in
                // memory, many times its encoded size for small types.
                self.values = self.values.saturating_add(count);
                if self.values > MAX_METADATA_VALUES {
                    return Err(GgufError::LimitExceeded {
                        what: "metadata values, array elements included (MAX_METADATA_VALUES)",
                        limit: MAX_METADATA_VALUES,
                    });
                }
                let count = usize::try_from(count).map_err(|_| truncated("array", count_pos))?;
                let mut values = Vec::with_capacity(count.min(MAX_PREALLOC));
                for _ in 0..count {
                    values.push(self.value(elem, depth + 1)?);
                }
                GgufValue::Array(elem, values)
            }
        })
    }
}

/// Backing storage of an opened file.
pub(crate) enum Storage {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

/// A shared, read-only handle on one tensor's stored bytes: it keeps the file's memory map
/// (or buffer) alive, so a model can hold its weights as stored, without a copy.
#[derive(Clone)]
pub struct TensorBytes {
    storage: Arc<Storage>,
    start: usize,
    end: usize,
}

impl TensorBytes {
    /// A handle on bytes held in memory (tests, weights built on the fly).
    pub fn from_vec(bytes: Vec<u8>) -> TensorBytes {
        let end = bytes.len();
        TensorBytes {
            storage: Arc::new(Storage::Owned(bytes)),
            start: 0,
            end,
        }
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.storage.bytes()[self.start..self.end]
    }

    /// Whether the bytes are read from a memory map (not a copy in memory).
    pub fn is_mapped(&self) -> bool {
        matches!(*self.storage, Storage::Mapped(_))
    }
}

impl fmt::Debug for TensorBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TensorBytes")
            .field("len", &(self.end - self.start))
            .field("mapped", &self.is_mapped())
            .finish()
    }
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mapped(m) => m,
            Storage::Owned(v) => v,
        }
    }
}

/// A parsed GGUF file: header, metadata and tensor directory, with the tensor data kept in a
/// read-only memory map (or an owned buffer for [`GgufFile::from_bytes`]).
///
/// Tensor data is only touched by [`GgufFile::tensor_bytes`] / [`GgufFile::dequantize`].
pub struct GgufFile {
    storage: Arc<Storage>,
    version: u32,
    alignment: u64,
    data_offset: u64,
    metadata: BTreeMap<String, GgufValue>,
    tensors: Vec<GgufTensorInfo>,
    index: HashMap<String, usize>,
}

impl fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GgufFile")
            .field("version", &self.version)
            .field("len", &self.storage.bytes().len())
            .field("alignment", &self.alignment)
            .field("data_offset", &self.data_offset)
            .field("n_metadata", &self.metadata.len())
            .field("n_tensors", &self.tensors.len())
            .finish()
    }
}

impl GgufFile {
    /// Opens and parses a GGUF file through a read-only memory map.
    ///
    /// The header, metadata and tensor directory are parsed and validated eagerly (including
    /// that every tensor's data lies inside the file); tensor data is read lazily.
    ///
    /// The file must not be modified or truncated by another process while it is open
    /// (standard memory-map caveat).
    pub fn open(path: &Path) -> Result<GgufFile, GgufError> {
        let io_err = |source| GgufError::Io {
            path: path.to_path_buf(),
            source,
        };
        // Opening a FIFO or a device would block or read forever: only regular files
        // (symbolic links followed) are opened.
        if !std::fs::metadata(path).map_err(io_err)?.is_file() {
            return Err(io_err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file (a GGUF model is a file)",
            )));
        }
        let file = File::open(path).map_err(io_err)?;
        let len = file.metadata().map_err(io_err)?.len();
        if len == 0 {
            // Mapping an empty file is not portable; parse the empty buffer instead.
            return GgufFile::from_bytes(Vec::new());
        }
        // SAFETY: the map is read-only and private to this struct; as documented above, the
        // file must not be modified while mapped (the usual contract for model files).
        let map = unsafe { Mmap::map(&file) }.map_err(io_err)?;
        GgufFile::parse(Storage::Mapped(map))
    }

    /// Parses a GGUF file held in memory (used by tests and for small files).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GgufFile, GgufError> {
        GgufFile::parse(Storage::Owned(bytes))
    }

    fn parse(storage: Storage) -> Result<GgufFile, GgufError> {
        let storage = Arc::new(storage);
        let buf = storage.bytes();
        let file_len = buf.len() as u64;
        let mut c = Cursor {
            buf,
            pos: 0,
            values: 0,
        };

        let head = buf.get(..4).unwrap_or(buf);
        if head != GGUF_MAGIC {
            if head.len() < 4 && GGUF_MAGIC.starts_with(head) {
                return Err(truncated("GGUF magic", 0));
            }
            return Err(GgufError::NotGguf {
                found: head.to_vec(),
            });
        }
        c.pos = 4;
        let version = c.u32("GGUF version")?;
        if version != 2 && version != 3 {
            if version.swap_bytes() == 2 || version.swap_bytes() == 3 {
                return Err(GgufError::Corrupt(
                    "this is a big-endian GGUF file, which is not supported; convert it to little \
                     endian with gguf-py"
                        .to_string(),
                ));
            }
            return Err(GgufError::UnsupportedVersion(version));
        }
        let tensor_count = c.u64("tensor count")?;
        let kv_count = c.u64("metadata key/value count")?;

        // Metadata.
        let mut metadata = BTreeMap::new();
        for i in 0..kv_count {
            let entry_pos = c.pos;
            let key = c
                .string("metadata key")
                .map_err(|e| e.context(|| format!("metadata entry #{i}")))?;
            let at_key = |e: GgufError| e.context(|| format!("metadata key `{key}`"));
            let type_pos = c.pos;
            let type_id = c.u32("value type").map_err(at_key)?;
            let ty = GgufValueType::from_id(type_id).ok_or_else(|| {
                GgufError::Corrupt(format!(
                    "metadata key `{key}` has unknown value type id {type_id} at byte offset \
                     {type_pos}"
                ))
            })?;
            let value = c.value(ty, 0).map_err(at_key)?;
            if metadata.insert(key.clone(), value).is_some() {
                return Err(GgufError::Corrupt(format!(
                    "duplicate metadata key `{key}` at byte offset {entry_pos}"
                )));
            }
        }

        // Tensor directory.
        let min_info_size = 8 + 4 + 4 + 8;
        let mut tensors: Vec<GgufTensorInfo> =
            Vec::with_capacity(usize::try_from(tensor_count).map_or(MAX_PREALLOC, |n| {
                n.min(c.remaining() / min_info_size).min(MAX_PREALLOC)
            }));
        let mut index = HashMap::with_capacity(tensors.capacity());
        for i in 0..tensor_count {
            let name = c
                .string("tensor name")
                .map_err(|e| e.context(|| format!("tensor info #{i}")))?;
            let info = read_tensor_info(&mut c, name)?;
            if index.insert(info.name.clone(), tensors.len()).is_some() {
                return Err(GgufError::Corrupt(format!(
                    "duplicate tensor name `{}`",
                    info.name
                )));
            }
            tensors.push(info);
        }

        // Alignment and data section.
        let alignment = match metadata.get(ALIGNMENT_KEY) {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a.is_power_of_two() => a,
                _ => {
                    return Err(GgufError::Corrupt(format!(
                        "`{ALIGNMENT_KEY}` is {}, expected a power-of-two integer",
                        v.describe()
                    )))
                }
            },
        };
        let data_offset = align_up(c.pos as u64, alignment).ok_or_else(|| {
            GgufError::Corrupt(format!("alignment {alignment} overflows the data offset"))
        })?;

        check_tensor_layout(&tensors, data_offset, alignment, file_len)?;

        Ok(GgufFile {
            storage,
            version,
            alignment,
            data_offset,
            metadata,
            tensors,
            index,
        })
    }

    /// GGUF format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Alignment of the data section (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute byte offset of the tensor data section; tensor offsets are relative to it.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// Total length of the file in bytes.
    pub fn file_len(&self) -> u64 {
        self.storage.bytes().len() as u64
    }

    /// All metadata key/values, sorted by key.
    pub fn metadata(&self) -> &BTreeMap<String, GgufValue> {
        &self.metadata
    }

    /// The metadata value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }

    /// `found` (the result of a `get_*` call) with an absent key as `None`: for optional
    /// metadata, where a missing key takes a default but a key of the wrong type is still
    /// an error.
    pub fn optional<T>(found: Result<T, GgufError>) -> Result<Option<T>, GgufError> {
        match found {
            Ok(v) => Ok(Some(v)),
            Err(GgufError::MissingKey(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn require(&self, key: &str) -> Result<&GgufValue, GgufError> {
        self.metadata
            .get(key)
            .ok_or_else(|| GgufError::MissingKey(key.to_string()))
    }

    fn wrong(key: &str, expected: &'static str, found: &GgufValue) -> GgufError {
        GgufError::WrongKeyType {
            key: key.to_string(),
            expected,
            found: found.describe(),
        }
    }

    /// `key` as `u32`; any integer type is accepted if the value fits.
    pub fn get_u32(&self, key: &str) -> Result<u32, GgufError> {
        let v = self.require(key)?;
        v.as_u32()
            .ok_or_else(|| Self::wrong(key, "an integer in the u32 range", v))
    }

    /// `key` as `u64`; any integer type is accepted if the value fits.
    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        let v = self.require(key)?;
        v.as_u64()
            .ok_or_else(|| Self::wrong(key, "an integer in the u64 range", v))
    }

    /// `key` as `f32`; `f32` and `f64` values are accepted.
    pub fn get_f32(&self, key: &str) -> Result<f32, GgufError> {
        let v = self.require(key)?;
        v.as_f32().ok_or_else(|| Self::wrong(key, "f32 or f64", v))
    }

    /// `key` as `bool`.
    pub fn get_bool(&self, key: &str) -> Result<bool, GgufError> {
        let v = self.require(key)?;
        v.as_bool().ok_or_else(|| Self::wrong(key, "bool", v))
    }

    /// `key` as a string.
    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        let v = self.require(key)?;
        v.as_str().ok_or_else(|| Self::wrong(key, "string", v))
    }

    /// `key` as an array of strings (in file order).
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>, GgufError> {
        let v = self.require(key)?;
        let err = || Self::wrong(key, "array<string>", v);
        match v {
            GgufValue::Array(GgufValueType::String, items) => {
                items.iter().map(|x| x.as_str().ok_or_else(err)).collect()
            }
            _ => Err(err()),
        }
    }

    /// `key` as an array of `f32` (in file order); `f32` and `f64` arrays are accepted.
    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>, GgufError> {
        let v = self.require(key)?;
        let err = || Self::wrong(key, "array<f32> or array<f64>", v);
        match v {
            GgufValue::Array(GgufValueType::F32 | GgufValueType::F64, items) => {
                items.iter().map(|x| x.as_f32().ok_or_else(err)).collect()
            }
            _ => Err(err()),
        }
    }

    /// `key` as an array of `i32` (in file order); arrays of any integer type are accepted if
    /// every element fits in `i32`.
    pub fn get_i32_array(&self, key: &str) -> Result<Vec<i32>, GgufError> {
        let v = self.require(key)?;
        let err = || Self::wrong(key, "array of integers in the i32 range", v);
        match v {
            GgufValue::Array(_, items) => {
                items.iter().map(|x| x.as_i32().ok_or_else(err)).collect()
            }
            _ => Err(err()),
        }
    }

    /// All tensor infos, in file order.
    pub fn tensors(&self) -> &[GgufTensorInfo] {
        &self.tensors
    }

    /// The info of tensor `name`.
    pub fn tensor(&self, name: &str) -> Result<&GgufTensorInfo, GgufError> {
        self.index
            .get(name)
            .and_then(|&i| self.tensors.get(i))
            .ok_or_else(|| GgufError::MissingTensor(name.to_string()))
    }

    /// The raw stored bytes of tensor `name` (`n_bytes()` bytes, ggml block layout).
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8], GgufError> {
        let (start, end) = self.tensor_span(name)?;
        Ok(&self.storage.bytes()[start..end])
    }

    /// A shared handle on tensor `name`'s stored bytes that outlives this `GgufFile` value
    /// (the memory map stays open while a handle exists).
    pub fn tensor_bytes_shared(&self, name: &str) -> Result<TensorBytes, GgufError> {
        let (start, end) = self.tensor_span(name)?;
        Ok(TensorBytes {
            storage: Arc::clone(&self.storage),
            start,
            end,
        })
    }

    /// Checked byte range of tensor `name` in the storage.
    fn tensor_span(&self, name: &str) -> Result<(usize, usize), GgufError> {
        let info = self.tensor(name)?;
        let buf = self.storage.bytes();
        let (start, end) = tensor_range(info, self.data_offset, buf.len() as u64)?;
        let oob = || GgufError::TensorDataOutOfBounds {
            tensor: info.name.clone(),
            start,
            end,
            file_len: buf.len() as u64,
        };
        let start = usize::try_from(start).map_err(|_| oob())?;
        let end = usize::try_from(end).map_err(|_| oob())?;
        buf.get(start..end).ok_or_else(oob)?;
        Ok((start, end))
    }

    /// Dequantises tensor `name` to `f32`, in storage order: element `i` of the result is
    /// element `i` of the row-major array of shape [`GgufTensorInfo::shape_row_major`]
    /// (for `dims == [ne0, ne1]`: row `i / ne0`, column `i % ne0`).
    ///
    /// Supported types: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K
    /// (bit-exact with ggml's reference `dequantize_row_*`); others give
    /// [`GgufError::UnsupportedTensorType`].
    pub fn dequantize(&self, name: &str) -> Result<Vec<f32>, GgufError> {
        let info = self.tensor(name)?;
        if !info.dtype.can_dequantize() {
            return Err(GgufError::UnsupportedTensorType {
                tensor: info.name.clone(),
                dtype: info.dtype,
            });
        }
        let bytes = self.tensor_bytes(name)?;
        let n = usize::try_from(info.n_elements()).map_err(|_| {
            GgufError::Corrupt(format!("tensor `{name}` is too large for this platform"))
        })?;
        let mut out = vec![0.0f32; n];
        dequantize_impl(&info.name, info.dtype, bytes, &mut out)?;
        Ok(out)
    }

    /// Like [`GgufFile::dequantize`] but writes into `out`, whose length must equal the
    /// tensor's element count.
    pub fn dequantize_into(&self, name: &str, out: &mut [f32]) -> Result<(), GgufError> {
        let info = self.tensor(name)?;
        let bytes = self.tensor_bytes(name)?;
        dequantize_impl(&info.name, info.dtype, bytes, out)
    }
}

pub(crate) fn read_tensor_info(
    c: &mut Cursor<'_>,
    name: String,
) -> Result<GgufTensorInfo, GgufError> {
    let at = |e: GgufError| e.context(|| format!("tensor info `{name}`"));
    let n_dims = c.u32("dimension count").map_err(at)?;
    if n_dims as usize > MAX_DIMS {
        return Err(GgufError::Corrupt(format!(
            "tensor `{name}` has {n_dims} dimensions (at most {MAX_DIMS} are allowed)"
        )));
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for _ in 0..n_dims {
        dims.push(c.u64("dimension").map_err(at)?);
    }
    let type_id = c.u32("ggml type").map_err(at)?;
    let offset = c.u64("data offset").map_err(at)?;
    let dtype = GgmlType::from_id(type_id).ok_or_else(|| GgufError::UnknownTensorType {
        tensor: name.clone(),
        type_id,
    })?;
    let n_elements = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= i64::MAX as u64)
        .ok_or_else(|| {
            GgufError::Corrupt(format!(
                "tensor `{name}` has dimensions {dims:?} whose element count overflows"
            ))
        })?;
    let ne0 = dims.first().copied().unwrap_or(1);
    let bs = dtype.block_size() as u64;
    if !ne0.is_multiple_of(bs) {
        return Err(GgufError::Corrupt(format!(
            "tensor `{name}` has row length {ne0}, which is not a multiple of the {dtype} block \
             size {bs}"
        )));
    }
    dtype.bytes_for(n_elements).ok_or_else(|| {
        GgufError::Corrupt(format!("tensor `{name}` has a byte size that overflows"))
    })?;
    Ok(GgufTensorInfo {
        name,
        dims,
        dtype,
        offset,
    })
}

/// Absolute `(start, end)` byte range of a tensor's data, checked against the file length.
pub(crate) fn tensor_range(
    t: &GgufTensorInfo,
    data_offset: u64,
    file_len: u64,
) -> Result<(u64, u64), GgufError> {
    let n_bytes = t
        .dtype
        .bytes_for(t.n_elements())
        .ok_or_else(|| GgufError::Corrupt(format!("tensor `{}` has an invalid size", t.name)))?;
    let start = data_offset.checked_add(t.offset);
    let end = start.and_then(|s| s.checked_add(n_bytes));
    match (start, end) {
        (Some(start), Some(end)) if end <= file_len => Ok((start, end)),
        (start, end) => Err(GgufError::TensorDataOutOfBounds {
            tensor: t.name.clone(),
            start: start.unwrap_or(u64::MAX),
            end: end.unwrap_or(u64::MAX),
            file_len,
        }),
    }
}

/// Every tensor's data lies inside the file, starts at a multiple of the alignment, and
/// shares no byte with another tensor's (llama.cpp refuses the same files): a file whose
/// tensors overlap would alias weights silently.
fn check_tensor_layout(
    tensors: &[GgufTensorInfo],
    data_offset: u64,
    alignment: u64,
    file_len: u64,
) -> Result<(), GgufError> {
    let mut ranges = Vec::with_capacity(tensors.len());
    for t in tensors {
        let (start, end) = tensor_range(t, data_offset, file_len)?;
        if !t.offset.is_multiple_of(alignment) {
            return Err(GgufError::Corrupt(format!(
                "tensor `{}` starts at data offset {}, not a multiple of the alignment {alignment}",
                t.name, t.offset
            )));
        }
        if end > start {
            ranges.push((start, end, &t.name));
        }
    }
    ranges.sort_unstable();
    for pair in ranges.windows(2) {
        let ((_, end, a), (start, _, b)) = (pair[0], pair[1]);
        if start < end {
            return Err(GgufError::Corrupt(format!(
                "the data of tensors `{a}` and `{b}` overlap (bytes {start}..{end} of the file)"
            )));
        }
    }
    Ok(())
}

pub(crate) fn align_up(x: u64, alignment: u64) -> Option<u64> {
    let mask = alignment.checked_sub(1)?;
    x.checked_add(mask).map(|v| v & !mask)
}
