//! Stopping a run of several ranks (`mpirun -np K cllm train`). Ctrl-C on
//! `mpirun` has OpenMPI send every rank SIGTERM, then SIGKILL
//! `odls_base_sigkill_timeout` seconds later (1 by default): too soon to
//! finish the step under way and save. So on the first SIGINT or SIGTERM
//! rank 0 writes the last completed step as the final checkpoint at once
//! (`cllm_train::cluster::last_step`) and says so on stdout (mpirun stops
//! forwarding stderr once it signals the job); docs/cluster.md has the
//! details and how to give OpenMPI's grace where a save takes longer.

use super::super::interrupt::{OnFirst, StopSignal, shell_quote};
use cllm_train::cluster::Cluster;
use cllm_train::cluster::last_step::{LastStep, SHARE_PATIENCE};
use cllm_train::events::Command;
use crossbeam_channel::Sender;
use std::sync::{Arc, OnceLock};

/// For a run of several ranks: every rank keeps its last completed step
/// (enabled here, on every rank), and on the first signal rank 0 saves it
/// at once, then every rank asks its trainer (`commands`, once started)
/// to stop. On the thread that watches for signals: the command's own
/// thread may be blocked writing to stdout, which mpirun stops reading
/// when it is interrupted. `None` on one machine.
pub fn on_first_signal(
    cluster: &Cluster,
    commands: &Arc<OnceLock<Sender<Command>>>,
    program: String,
) -> Option<OnFirst> {
    if !cluster.is_distributed() {
        return None;
    }
    let keep = Arc::clone(cluster.last_step());
    keep.enable();
    let (writer, ranks, commands) = (cluster.is_writer(), cluster.size(), Arc::clone(commands));
    Some(Box::new(move |signal| {
        if writer {
            save_at_once(&keep, signal, ranks, &program);
        }
        if let Some(commands) = commands.get() {
            let _ = commands.send(Command::Stop);
        }
    }))
}

/// OpenMPI's grace between its SIGTERM and its SIGKILL, in seconds, as
/// this rank was launched with (`--mca odls_base_sigkill_timeout N` reaches
/// the ranks as this variable too).
fn sigkill_timeout() -> String {
    std::env::var("OMPI_MCA_odls_base_sigkill_timeout").unwrap_or_else(|_| "1".into())
}

/// What Ctrl-C does to this run, once its size is known: `params` weights
/// (with AdamW's two moments, 12 bytes each in a checkpoint).
pub fn hint(params: usize) -> String {
    let mb = (params as f64 * 12.0 / 1e6).max(0.1);
    format!(
        "Ctrl-C on mpirun (or SIGTERM to the ranks): rank 0 saves the last completed step at \
         once ({mb:.1} MB), before OpenMPI kills the ranks {} s after its SIGTERM; where \
         writing that takes longer, give it time: mpirun --mca odls_base_sigkill_timeout 30 ...",
        sigkill_timeout()
    )
}

/// Rank 0, on the first signal: the last completed step saved at once and
/// put at the output path, each said on stdout as soon as it is done. When
/// nothing could be saved at once (said too), the run stops after its step
/// and saves as a run on one machine does.
fn save_at_once(keep: &LastStep, signal: StopSignal, ranks: usize, program: &str) {
    let saved = match keep.save_now(SHARE_PATIENCE) {
        Ok(saved) => saved,
        Err(e) => {
            println!(
                "{}: nothing saved at once ({e}); stopping after the current step, which OpenMPI \
                 may not wait for (docs/cluster.md)",
                signal.name()
            );
            return;
        }
    };
    // The copy on a thread of its own: the line below may block on a pipe
    // nobody reads any more, and the copy must not wait for it.
    std::thread::scope(|scope| {
        let copy = scope.spawn(|| keep.copy_to_output());
        println!(
            "{}: step {} saved at once ({:.2} s): {}",
            signal.name(),
            saved.step,
            saved.secs,
            saved.run_final.display()
        );
        let resume_from = match copy.join() {
            Ok(Ok(kept)) => {
                if let Some(kept) = kept {
                    println!(
                        "the previous {} is from no run folder: kept as {}",
                        saved.output.display(),
                        kept.display()
                    );
                }
                &saved.output
            }
            Ok(Err(e)) => {
                println!("not copied to the output path: {e}");
                &saved.run_final
            }
            Err(_) => &saved.run_final,
        };
        println!("{}", resume_line(ranks, program, resume_from));
    });
}

/// The command that resumes from `path` on as many ranks.
pub fn resume_line(ranks: usize, program: &str, path: &std::path::Path) -> String {
    let launcher = if ranks > 1 {
        format!("mpirun -np {ranks} ")
    } else {
        String::new()
    };
    format!(
        "resume with: {launcher}{} train --resume {}",
        shell_quote(program),
        shell_quote(&path.to_string_lossy())
    )
}
