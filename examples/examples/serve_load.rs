//! A bounded load run against an OpenAI-compatible server (`pudding serve`, or llama.cpp's
//! `llama-server` on the same GGUF): a fixed number of streaming chat requests at each
//! concurrency, prompts drawn round-robin from the paper's evaluation tasks (so a routed
//! server sends them to several candidates), then it stops. Prints one Markdown row per
//! concurrency: generated tokens/s (all requests together), time to first token and
//! inter-token latency (p50/p99), errors, and the omission sets the server reported.
//!
//! ```text
//! cargo run --release -p pudding-examples --example serve_load -- \
//!     --url http://127.0.0.1:8080 --requests 200 --concurrency 1,4,8,16 --max-tokens 64
//! ```
//!
//! Every request sends `temperature: 0` and `max_tokens`; with `--skip` it also sends
//! `"pudding": {"skip": ...}` (`auto`, `dense` or blocks like `3,7,19`; leave it out for a
//! peer server). `--time-limit` bounds each concurrency level: past it no new request
//! starts.

use clap::Parser;
use pudding_eval::tasks::{load_task, TaskName};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// The server's base URL (http only, e.g. http://127.0.0.1:8080).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Bearer token, if the server wants one.
    #[arg(long)]
    api_key: Option<String>,
    /// The `model` field (default: the first id of GET /v1/models).
    #[arg(long)]
    model: Option<String>,
    /// Requests per concurrency level.
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// Concurrency levels, comma-separated.
    #[arg(long, default_value = "1,4,8,16")]
    concurrency: String,
    /// max_tokens of every request.
    #[arg(long, default_value_t = 64)]
    max_tokens: usize,
    /// The `pudding.skip` extension to send (auto, dense or blocks); none for a peer.
    #[arg(long)]
    skip: Option<String>,
    /// Seconds per concurrency level after which no new request starts.
    #[arg(long, default_value_t = 600)]
    time_limit: u64,
    /// A label for the rows (e.g. "pudding routed").
    #[arg(long, default_value = "server")]
    label: String,
    /// Index of the first prompt (to keep a second server's run on other prompts, or the
    /// same ones).
    #[arg(long, default_value_t = 0)]
    offset: usize,
    /// Also write the rows as JSON lines here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

/// One request's outcome.
#[derive(Default)]
struct Outcome {
    ok: bool,
    tokens: usize,
    ttft: Option<f64>,
    gaps: Vec<f64>,
    set: Option<String>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let host = args
        .url
        .strip_prefix("http://")
        .ok_or("--url must start with http://")?
        .trim_end_matches('/')
        .to_string();
    let model = match &args.model {
        Some(m) => m.clone(),
        None => {
            let (_, body) = request(&host, "GET", "/v1/models", None, args.api_key.as_deref())?;
            let v: Value = serde_json::from_str(&body)?;
            v["data"][0]["id"]
                .as_str()
                .ok_or("no model listed")?
                .to_string()
        }
    };
    let prompts = prompts()?;
    let levels: Vec<usize> = args
        .concurrency
        .split(',')
        .map(|c| c.trim().parse())
        .collect::<Result<_, _>>()?;
    println!("| server | concurrency | requests ok | errors | wall s | generated tokens/s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms | sets |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    // Every request of the run gets its own prompt (a server that caches prompts must not
    // see one twice): level L starts after the prompts of the levels before it.
    let mut offset = args.offset;
    for concurrency in levels {
        let first_prompt = offset;
        offset += args.requests;
        let next = AtomicUsize::new(0);
        let outcomes = Mutex::new(Vec::new());
        let start = Instant::now();
        let limit = Duration::from_secs(args.time_limit);
        std::thread::scope(|scope| {
            for _ in 0..concurrency {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= args.requests || start.elapsed() > limit {
                        break;
                    }
                    let mut body = json!({
                        "model": model,
                        "messages": [{"role": "user", "content": prompts[(first_prompt + i) % prompts.len()]}],
                        "temperature": 0,
                        "max_tokens": args.max_tokens,
                        "stream": true,
                        "stream_options": {"include_usage": true},
                    });
                    if let Some(skip) = &args.skip {
                        body["pudding"] = json!({"skip": skip_value(skip)});
                    }
                    let outcome = stream_chat(&host, &body, args.api_key.as_deref()).unwrap_or_default();
                    outcomes.lock().unwrap().push(outcome);
                });
            }
        });
        let wall = start.elapsed().as_secs_f64();
        let outcomes = outcomes.into_inner().unwrap();
        let ok: Vec<&Outcome> = outcomes.iter().filter(|o| o.ok).collect();
        let tokens: usize = ok.iter().map(|o| o.tokens).sum();
        let mut ttft: Vec<f64> = ok.iter().filter_map(|o| o.ttft).collect();
        let mut gaps: Vec<f64> = ok.iter().flat_map(|o| o.gaps.iter().copied()).collect();
        let mut sets: BTreeMap<String, usize> = BTreeMap::new();
        for o in &ok {
            *sets
                .entry(o.set.clone().unwrap_or_else(|| "-".into()))
                .or_default() += 1;
        }
        let ms = |v: &mut Vec<f64>, q: f64| percentile(v, q) * 1000.0;
        let row = json!({
            "server": args.label, "concurrency": concurrency, "ok": ok.len(),
            "errors": outcomes.len() - ok.len(), "wall_seconds": wall,
            "tokens_per_second": tokens as f64 / wall,
            "ttft_p50_ms": ms(&mut ttft, 0.5), "ttft_p99_ms": ms(&mut ttft, 0.99),
            "itl_p50_ms": ms(&mut gaps, 0.5), "itl_p99_ms": ms(&mut gaps, 0.99),
            "sets": sets,
        });
        println!(
            "| {} | {concurrency} | {} | {} | {wall:.1} | {:.1} | {:.0} | {:.0} | {:.1} | {:.1} | {} |",
            args.label,
            ok.len(),
            outcomes.len() - ok.len(),
            row["tokens_per_second"].as_f64().unwrap_or(0.0),
            row["ttft_p50_ms"].as_f64().unwrap_or(0.0),
            row["ttft_p99_ms"].as_f64().unwrap_or(0.0),
            row["itl_p50_ms"].as_f64().unwrap_or(0.0),
            row["itl_p99_ms"].as_f64().unwrap_or(0.0),
            sets.len()
        );
        if let Some(path) = &args.json {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            writeln!(file, "{row}")?;
        }
    }
    Ok(())
}

/// Items taken from each task: 1,200 prompts in all, enough for 200 requests at each of
/// six concurrency levels without repeating one.
const PROMPTS_PER_TASK: usize = 200;

/// Prompts of the paper's six tasks (validation or test items), interleaved task by task.
fn prompts() -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let mut per_task = Vec::new();
    for task in TaskName::PAPER {
        let items = load_task(task, task.default_eval_split())?;
        per_task.push(
            items
                .into_iter()
                .take(PROMPTS_PER_TASK)
                .map(|item| item.contexts[0].trim().to_string())
                .collect::<Vec<_>>(),
        );
    }
    let longest = per_task.iter().map(Vec::len).max().unwrap_or(0);
    Ok((0..longest)
        .flat_map(|i| per_task.iter().filter_map(move |t| t.get(i).cloned()))
        .collect())
}

fn skip_value(skip: &str) -> Value {
    match skip {
        "auto" | "dense" => json!(skip),
        blocks => json!(blocks
            .split(',')
            .filter_map(|b| b.trim().parse::<usize>().ok())
            .collect::<Vec<_>>()),
    }
}

fn percentile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let index = ((values.len() - 1) as f64 * q).round() as usize;
    values[index]
}

fn connect(
    host: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    key: Option<&str>,
) -> std::io::Result<TcpStream> {
    let mut stream = TcpStream::connect(host)?;
    stream.set_read_timeout(Some(Duration::from_secs(600)))?;
    let body = body.unwrap_or("");
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    Ok(stream)
}

fn request(
    host: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    key: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut reader = BufReader::new(connect(host, method, path, body, key)?);
    let (status, chunked) = read_head(&mut reader)?;
    let mut text = String::new();
    if chunked {
        while let Some(chunk) = read_chunk(&mut reader)? {
            text.push_str(&chunk);
        }
    } else {
        std::io::Read::read_to_string(&mut reader, &mut text)?;
    }
    Ok((status, text))
}

/// Status line and headers: (status, chunked?).
fn read_head(reader: &mut impl BufRead) -> std::io::Result<(u16, bool)> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut chunked = false;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    Ok((status, chunked))
}

/// One chunk of a chunked body (`None` at the end).
fn read_chunk(reader: &mut impl BufRead) -> std::io::Result<Option<String>> {
    let mut size = String::new();
    if reader.read_line(&mut size)? == 0 {
        return Ok(None);
    }
    let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
    if n == 0 {
        return Ok(None);
    }
    let mut data = vec![0; n + 2];
    std::io::Read::read_exact(reader, &mut data)?;
    data.truncate(n);
    Ok(Some(String::from_utf8_lossy(&data).into_owned()))
}

/// One streaming chat request: times the content chunks as they arrive.
fn stream_chat(host: &str, body: &Value, key: Option<&str>) -> std::io::Result<Outcome> {
    let start = Instant::now();
    let mut reader = BufReader::new(connect(
        host,
        "POST",
        "/v1/chat/completions",
        Some(&body.to_string()),
        key,
    )?);
    let (status, chunked) = read_head(&mut reader)?;
    let mut outcome = Outcome::default();
    if status != 200 {
        return Ok(outcome);
    }
    let mut pending = String::new();
    let mut last: Option<Instant> = None;
    let mut chunks = 0;
    let mut usage_tokens = None;
    loop {
        let piece = if chunked {
            match read_chunk(&mut reader)? {
                Some(p) => p,
                None => break,
            }
        } else {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                break;
            }
            line
        };
        pending.push_str(&piece);
        while let Some(end) = pending.find('\n') {
            let line: String = pending.drain(..=end).collect();
            let Some(data) = line.trim_end().strip_prefix("data: ") else {
                continue;
            };
            if data == "[DONE]" {
                outcome.ok = true;
                continue;
            }
            let Ok(v) = serde_json::from_str::<Value>(data) else {
                continue;
            };
            if v.get("error").is_some() {
                return Ok(Outcome::default());
            }
            if let Some(skip) = v.get("pudding").and_then(|p| p.get("skip")) {
                outcome.set = Some(skip.to_string());
            }
            if let Some(n) = v.get("usage").and_then(|u| u["completion_tokens"].as_u64()) {
                usage_tokens = Some(n as usize);
            }
            let has_text = v["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|t| !t.is_empty());
            if has_text {
                let now = Instant::now();
                match last {
                    None => outcome.ttft = Some(now.duration_since(start).as_secs_f64()),
                    Some(t) => outcome.gaps.push(now.duration_since(t).as_secs_f64()),
                }
                last = Some(now);
                chunks += 1;
            }
        }
    }
    outcome.tokens = usage_tokens.unwrap_or(chunks);
    Ok(outcome)
}
