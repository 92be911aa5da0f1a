//! Native file dialogs off the UI thread.
//!
//! A native dialog blocks its caller until it closes, so the Training tab
//! opens it on a thread of its own and polls for the answer each frame,
//! as the LLM tab's Browse… does: the window keeps drawing (and a run keeps
//! streaming) while the dialog is open. With no desktop portal rfd answers
//! `None` at once; the typed path fields keep working. On macOS rfd hands
//! the panel to the main thread, which is free because the UI never waits.

use crossbeam_channel::{Receiver, TryRecvError, bounded};
use eframe::egui;
use std::path::PathBuf;
use std::sync::Arc;

/// What to ask the user for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PickRequest {
    /// A folder, starting in this one when it exists.
    Folder { start: PathBuf },
    /// A checkpoint file (`.cllm`), starting in this folder when it exists.
    Checkpoint { start: PathBuf },
}

/// Shows a dialog and returns the choice (`None`: cancelled). Runs on a
/// background thread; tests put a scripted one in `WorkbenchApp::picker`.
pub type Picker = Arc<dyn Fn(PickRequest) -> Option<PathBuf> + Send + Sync>;

/// The system dialog through rfd.
pub fn native_picker() -> Picker {
    Arc::new(|request| match request {
        PickRequest::Folder { start } => {
            let mut d = rfd::FileDialog::new();
            if start.is_dir() {
                d = d.set_directory(start);
            }
            d.pick_folder()
        }
        PickRequest::Checkpoint { start } => {
            let mut d = rfd::FileDialog::new().add_filter("CLLM checkpoint", &["cllm"]);
            if start.is_dir() {
                d = d.set_directory(start);
            }
            d.pick_file()
        }
    })
}

/// Why a dialog was opened: where its answer goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PickPurpose {
    DataFolder,
    ResumeCheckpoint,
}

/// An open dialog; its answer arrives once.
pub struct PickJob {
    pub purpose: PickPurpose,
    rx: Receiver<Option<PathBuf>>,
}

impl PickJob {
    pub fn start(
        purpose: PickPurpose,
        request: PickRequest,
        picker: &Picker,
        repaint: Option<egui::Context>,
    ) -> PickJob {
        let (tx, rx) = bounded(1);
        let picker = Arc::clone(picker);
        std::thread::spawn(move || {
            // A panic in the dialog is a cancelled pick, not a crash.
            let picked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| picker(request)))
                .ok()
                .flatten();
            let _ = tx.send(picked);
            if let Some(ctx) = repaint {
                ctx.request_repaint();
            }
        });
        PickJob { purpose, rx }
    }

    /// `Some(answer)` once the dialog has closed (`Some(None)`: nothing
    /// picked); `None` while it is open. Never blocks.
    pub fn poll(&self) -> Option<Option<PathBuf>> {
        match self.rx.try_recv() {
            Ok(picked) => Some(picked),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn wait(job: &PickJob) -> Option<PathBuf> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(answer) = job.poll() {
                return answer;
            }
            assert!(
                Instant::now() < deadline,
                "the dialog thread never answered"
            );
            std::thread::yield_now();
        }
    }

    #[test]
    fn answers_arrive_without_blocking_the_caller() {
        let (release_tx, release_rx) = bounded::<()>(0);
        let picker: Picker = Arc::new(move |req| {
            let _ = release_rx.recv();
            match req {
                PickRequest::Folder { start } => Some(start.join("picked")),
                PickRequest::Checkpoint { .. } => None,
            }
        });
        let job = PickJob::start(
            PickPurpose::DataFolder,
            PickRequest::Folder {
                start: PathBuf::from("data"),
            },
            &picker,
            None,
        );
        // The dialog is "open" until released: polling returns at once.
        assert_eq!(job.poll(), None);
        release_tx.send(()).unwrap();
        assert_eq!(wait(&job), Some(PathBuf::from("data/picked")));

        let panicking: Picker = Arc::new(|_| panic!("no display"));
        let job = PickJob::start(
            PickPurpose::ResumeCheckpoint,
            PickRequest::Checkpoint {
                start: PathBuf::from("."),
            },
            &panicking,
            None,
        );
        assert_eq!(wait(&job), None);
    }
}
