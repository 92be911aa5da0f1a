//! Answers written to a client: a JSON body with its status, an API
//! error, or server-sent events written as HTTP chunks, flushed one event
//! at a time.

use super::api::ApiError;
use std::io::{self, Write};
use tiny_http::{Header, Request, Response};

pub fn respond_json(req: Request, status: u16, body: &str) {
    let response = Response::from_string(body)
        .with_status_code(status)
        .with_header(json_header());
    // A client that went away cannot be told anything.
    let _ = req.respond(response);
}

pub fn respond_error(req: Request, e: &ApiError) {
    respond_json(req, e.status, &e.body())
}

fn json_header() -> Header {
    Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..])
        .unwrap_or_else(|_| unreachable!("a constant header is valid"))
}

/// A `text/event-stream` answer: each event one HTTP chunk, flushed at once
/// so a client sees every token as it comes; a failed write means the
/// client went away.
pub struct SseStream {
    out: Box<dyn Write + Send>,
}

impl SseStream {
    pub fn open(req: Request) -> io::Result<SseStream> {
        let mut out = req.into_writer();
        out.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\
              Transfer-Encoding: chunked\r\nServer: cllm\r\n\r\n",
        )?;
        out.flush()?;
        Ok(SseStream { out })
    }

    /// Sends `data: {data}\n\n`.
    pub fn send(&mut self, data: &str) -> io::Result<()> {
        let event = format!("data: {data}\n\n");
        let mut chunk = format!("{:x}\r\n", event.len()).into_bytes();
        chunk.extend_from_slice(event.as_bytes());
        chunk.extend_from_slice(b"\r\n");
        self.out.write_all(&chunk)?;
        self.out.flush()
    }

    /// Sends `data: [DONE]` and ends the body.
    pub fn finish(mut self) -> io::Result<()> {
        self.send("[DONE]")?;
        self.out.write_all(b"0\r\n\r\n")?;
        self.out.flush()
    }
}
