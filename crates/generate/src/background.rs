//! A generator on its own thread, for user interfaces: tokens come back
//! over a crossbeam channel as they are produced, and a shared flag stops
//! the reply within one token. The UI drains the channel each frame and
//! never waits on the worker.

use super::decoder::{DecodeOptions, Precision};
use super::error::GenerateError;
use super::generator::{GeneratedToken, GenerationStats, Generator, Infill};
use super::sampling::SamplingConfig;
use cllm_core::Gpt;
use cllm_data::tokenizer::Tokenizer;
use cllm_memory::Memory;
use crossbeam_channel::{Receiver, unbounded};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

/// What the generation thread reports, in order: tokens, then exactly one
/// `Finished` or `Error`.
#[derive(Clone, Debug)]
pub enum GenerationEvent {
    Token(GeneratedToken),
    /// The reply ended; the stats say why and how fast.
    Finished(GenerationStats),
    /// Generation could not start (the error says why).
    Error(GenerateError),
}

/// The front end's side of a running reply.
pub struct GenerationHandle {
    pub events: Receiver<GenerationEvent>,
    cancel: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl GenerationHandle {
    /// Asks the reply to stop; a `Finished` event (reason `Cancelled`)
    /// follows within one token.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// Whether the thread has ended (all its events are in the channel).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }
}

impl Drop for GenerationHandle {
    /// Dropping the handle stops the reply and waits for the thread, so no
    /// generation outlives the front end that asked for it.
    fn drop(&mut self) {
        self.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What a background reply starts from: a prompt to continue, or a hole
/// to fill between a prefix and a suffix ([`Generator::infill`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GenerationStart {
    Prompt(String),
    Infill(Infill),
}

impl From<String> for GenerationStart {
    fn from(prompt: String) -> GenerationStart {
        GenerationStart::Prompt(prompt)
    }
}

impl From<&str> for GenerationStart {
    fn from(prompt: &str) -> GenerationStart {
        GenerationStart::Prompt(prompt.to_string())
    }
}

impl From<Infill> for GenerationStart {
    fn from(infill: Infill) -> GenerationStart {
        GenerationStart::Infill(infill)
    }
}

/// Makes the weights a reply runs with from the loaded ones, on the reply's
/// thread (the app adapts them to the prompt this way).
pub type PrepareModel = Box<dyn FnOnce(&Gpt) -> Result<Gpt, String> + Send>;

/// Starts a reply on a new thread from a prompt or an [`Infill`], with
/// `memory` mixed in when given and the weights `prepare` makes from
/// `model` when given. `notify` is called after every event (an egui app
/// passes `move || ctx.request_repaint()`). A model that cannot infill
/// answers an `Infill` with [`GenerateError::NoInfill`].
pub fn spawn_generation(
    model: Arc<Gpt>,
    tok: Arc<Tokenizer>,
    start: GenerationStart,
    cfg: SamplingConfig,
    memory: Option<Arc<Memory>>,
    prepare: Option<PrepareModel>,
    notify: impl Fn() + Send + 'static,
) -> GenerationHandle {
    let (tx, rx) = unbounded();
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&cancel);
    let thread = std::thread::Builder::new()
        .name("cllm-generate".into())
        .spawn(move || {
            // Every core for the reply, fp32: the same reply, bit for bit,
            // as `Generator::new` gives (crates/app/tests/app_llm_tab/ compares).
            let options = DecodeOptions {
                threads: 0,
                precision: Precision::Fp32,
                ..DecodeOptions::default()
            };
            let model = match prepare.map(|f| f(&model)) {
                None => model,
                Some(Ok(prepared)) => Arc::new(prepared),
                Some(Err(e)) => {
                    let _ = tx.send(GenerationEvent::Error(GenerateError::Prepare(e)));
                    notify();
                    return;
                }
            };
            let started = match &start {
                GenerationStart::Prompt(prompt) => {
                    Generator::with_options(&model, &tok, prompt, cfg, options)
                }
                GenerationStart::Infill(infill) => {
                    Generator::infill(&model, &tok, infill, cfg, options).map(|(g, _)| g)
                }
            };
            let mut generator = match started {
                Ok(g) => g,
                Err(e) => {
                    let _ = tx.send(GenerationEvent::Error(e));
                    notify();
                    return;
                }
            };
            if let Some(memory) = &memory
                && let Err(e) = generator.use_memory(memory)
            {
                let _ = tx.send(GenerationEvent::Error(e));
                notify();
                return;
            }
            generator.set_cancel_flag(flag);
            while let Some(token) = generator.next_token() {
                if tx.send(GenerationEvent::Token(token)).is_err() {
                    // Nobody listens any more.
                    return;
                }
                notify();
            }
            let _ = tx.send(GenerationEvent::Finished(generator.stats()));
            notify();
        });
    let thread = match thread {
        Ok(t) => Some(t),
        Err(e) => {
            // The channel outlives this function through `rx`; report there.
            let (tx2, rx2) = unbounded();
            let _ = tx2.send(GenerationEvent::Error(GenerateError::Thread(e.to_string())));
            return GenerationHandle {
                events: rx2,
                cancel,
                thread: None,
            };
        }
    };
    GenerationHandle {
        events: rx,
        cancel,
        thread,
    }
}
