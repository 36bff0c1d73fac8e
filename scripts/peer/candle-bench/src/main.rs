//! candle's `quantized_llama` on a GGUF: prefill of `prompt` synthetic tokens (the same ids
//! as `pudding_eval::bench::synthetic_prompt`), then `generate` greedy decode steps, timed
//! over `repeats` runs after a warm-up; prints one JSON line with the medians.
//!
//! Usage: candle-bench <model.gguf> [prompt=128] [generate=128] [repeats=3]
//! Set CANDLE_DEQUANTIZE_ALL=1 to run every matmul in f32 (pudding's arithmetic) instead
//! of candle's quantized kernels.

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama::ModelWeights;
use std::time::Instant;

/// The same ids as `pudding_eval::bench::synthetic_prompt(len, vocab)`.
fn synthetic_prompt(len: usize, vocab: u32) -> Vec<u32> {
    let low = 100.min(vocab / 4);
    let modulus = u64::from((vocab - 2 * low).max(1));
    (0..len as u64)
        .map(|i| low + ((i * 7919) % modulus) as u32)
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() -> candle_core::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .expect("usage: candle-bench <model.gguf> [prompt] [generate] [repeats]");
    let arg = |i: usize, default: usize| args.get(i).map_or(default, |a| a.parse().unwrap());
    let (prompt_len, generate, repeats) = (arg(2, 128), arg(3, 128), arg(4, 3));
    let device = Device::Cpu;
    let mut file = std::fs::File::open(path)?;
    let content = gguf_file::Content::read(&mut file)?;
    let vocab = content
        .metadata
        .get("tokenizer.ggml.tokens")
        .map(|v| v.to_vec().map(|t| t.len()))
        .transpose()?
        .unwrap_or(32000) as u32;
    let mut model = ModelWeights::from_gguf(content, &mut file, &device)?;
    let prompt = synthetic_prompt(prompt_len, vocab);
    let (mut prefill, mut decode) = (Vec::new(), Vec::new());
    for run in 0..=repeats {
        let input = Tensor::new(prompt.as_slice(), &device)?.unsqueeze(0)?;
        let start = Instant::now();
        let logits = model.forward(&input, 0)?;
        let mut next = logits.squeeze(0)?.argmax(0)?.to_scalar::<u32>()?;
        let prefill_secs = start.elapsed().as_secs_f64();
        let start = Instant::now();
        for i in 0..generate {
            let input = Tensor::new(&[next], &device)?.unsqueeze(0)?;
            let logits = model.forward(&input, prompt_len + i)?;
            next = logits.squeeze(0)?.argmax(0)?.to_scalar::<u32>()?;
        }
        let decode_secs = start.elapsed().as_secs_f64();
        if run > 0 {
            prefill.push(prefill_secs);
            decode.push(decode_secs);
        }
    }
    println!(
        "{{\"prompt\": {prompt_len}, \"generate\": {generate}, \"repeats\": {repeats}, \
         \"dequantize_all\": {}, \"prefill_s\": {:.4}, \"decode_s\": {:.4}, \
         \"decode_tokens_per_s\": {:.2}}}",
        std::env::var("CANDLE_DEQUANTIZE_ALL").is_ok(),
        median(prefill.clone()),
        median(decode.clone()),
        generate as f64 / median(decode)
    );
    Ok(())
}
