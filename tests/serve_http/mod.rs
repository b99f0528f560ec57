//! A `steex serve` started on a free port for the tests, and a small HTTP/1.1 client over
//! std's `TcpStream` (with chunked bodies and server-sent events decoded).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::common::steex_command;

/// A running `steex serve`, killed when dropped.
pub struct Server {
    child: Child,
    /// `host:port`.
    pub addr: String,
}

impl Server {
    pub fn start(cwd: &Path, args: &[&str]) -> Server {
        let mut child = steex_command()
            .args(["serve", "--port", "0"])
            .args(args)
            .current_dir(cwd)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("steex serve starts");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut seen = String::new();
        let addr = loop {
            let Some(Ok(line)) = lines.next() else {
                let _ = child.kill();
                panic!("steex serve exited before printing its address; stderr:\n{seen}");
            };
            seen.push_str(&line);
            seen.push('\n');
            if let Some(rest) = line.split("http://").nth(1) {
                assert!(line.contains("local only"), "{line}");
                break rest.split('/').next().unwrap().to_string();
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server { child, addr }
    }

    pub fn request(&self, method: &str, path: &str, content_type: Option<&str>, body: &[u8]) -> Reply {
        let mut s = TcpStream::connect(&self.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
        let ct = content_type.map(|c| format!("Content-Type: {c}\r\n")).unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n{ct}\r\n",
            self.addr,
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        // A server may answer (and close) before reading a refused body whole.
        let _ = s.write_all(body);
        read_reply(&mut s)
    }

    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, None, b"")
    }

    pub fn post_json(&self, path: &str, v: &Value) -> Reply {
        self.request("POST", path, Some("application/json"), v.to_string().as_bytes())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The status line and headers, lower-cased.
    pub head: String,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!("not JSON ({e}), status {}: {}", self.status, String::from_utf8_lossy(&self.body))
        })
    }

    pub fn ok_json(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{}", String::from_utf8_lossy(&self.body));
        self.json()
    }

    /// A refusal: the status, a JSON `{"error"}` naming `needle`.
    pub fn assert_error(&self, status: u16, needle: &str) {
        let v = self.json();
        assert_eq!(self.status, status, "{v}");
        let e = v["error"].as_str().unwrap_or_else(|| panic!("no error message: {v}"));
        assert!(e.contains(needle), "`{e}` lacks `{needle}`");
        assert!(self.head.contains("content-type: application/json"), "{}", self.head);
    }

    pub fn image(&self) -> image::DynamicImage {
        assert_eq!(self.status, 200, "{}", String::from_utf8_lossy(&self.body));
        assert!(self.head.contains("content-type: image/png"), "{}", self.head);
        image::load_from_memory(&self.body).expect("a decodable PNG")
    }
}

pub fn read_reply(s: &mut TcpStream) -> Reply {
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the reply");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a header");
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut body = raw[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    Reply { status, head, body }
}

pub fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else { return out };
        let size = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
}

/// The events of a server-sent event stream: `(name, data)`.
pub fn events(body: &[u8]) -> Vec<(String, Value)> {
    let text = String::from_utf8_lossy(body);
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut name = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            let value = serde_json::from_str(&data).unwrap_or_else(|e| panic!("event {name}: {e}: {data}"));
            (name, value)
        })
        .collect()
}

/// Polls a job until `done(status JSON)` holds (at most two minutes).
pub fn wait_job(s: &Server, job: &str, done: impl Fn(&Value) -> bool) -> Value {
    let t = Instant::now();
    loop {
        let v = s.get(&format!("/api/jobs/{job}")).ok_json(200);
        if done(&v) {
            return v;
        }
        assert!(t.elapsed() < Duration::from_secs(120), "job {job} did not get there: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn png_of(img: image::DynamicImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}
