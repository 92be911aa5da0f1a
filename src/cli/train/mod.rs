//! `cllm train`: the trainer with a terminal progress bar (or JSON lines).
//! The flags and the `--config` file make the run's config (`args`,
//! `config_file`); `terminal` draws the run.

mod args;
mod cluster_stop;
mod config_file;
mod terminal;

pub use args::TrainArgs;
pub use terminal::clock;

use cllm_train::cluster::Cluster;
use cllm_train::events::{Event, Summary};
use cllm_train::trainer::{TrainOptions, spawn};
use terminal::Terminal;

pub fn run(args: TrainArgs) -> Result<(), super::Failure> {
    let launch = super::cluster::Launch::detect()?;
    let cluster = launch.cluster();
    let result = run_rank(args, cluster.clone());
    if let Err(failure) = &result
        && cluster.is_distributed()
        && !failure.is_stop()
    {
        // The other ranks wait for this one in a collective: end them all.
        launch.end_all_ranks(&failure.message, failure.code);
    }
    if let Err(failure) = &result
        && cluster.is_distributed()
        && cluster.is_writer()
        && failure.is_stop()
    {
        // mpirun stops forwarding stderr once it has signalled the job: the
        // stop and the command that resumes it go out on stdout, now
        // (unless they went out as the checkpoint was saved at once).
        if !failure.message.is_empty() {
            println!("{}", failure.message);
        }
        return Err(super::Failure {
            message: String::new(),
            code: failure.code,
        });
    }
    if !cluster.is_writer() {
        // Rank 0 speaks for the run; the others only report their errors.
        return result.map_err(|f| super::Failure {
            message: format!("rank {}: {}", cluster.rank(), f.message),
            ..f
        });
    }
    result
}

fn run_rank(args: TrainArgs, cluster: Cluster) -> Result<(), super::Failure> {
    use super::Failure;
    use super::interrupt::{Interrupts, StopSignal};
    let config = args.to_config()?;
    config.validate().map_err(String::from)?;
    super::cluster::size_rayon_for_rank(&cluster, config.resolved_threads());
    let quiet = !cluster.is_writer();
    let cluster_size = cluster.size();
    // A cluster's ranks keep their last completed step: on the first signal
    // rank 0 saves it at once, and every rank asks its trainer to stop,
    // on the watching thread (`cluster_stop`).
    let keep = std::sync::Arc::clone(cluster.last_step());
    let trainer_commands = std::sync::Arc::new(std::sync::OnceLock::new());
    let on_first = cluster_stop::on_first_signal(&cluster, &trainer_commands, program_name());
    // Ctrl-C or SIGTERM: the first stops the trainer after its current
    // step (it then saves the final checkpoint); a second one quits at once.
    let interrupts = Interrupts::watch_then(
        "again: quitting now, without the final checkpoint (the last one saved stays intact)",
        on_first,
    )?;
    let handle = spawn(config, TrainOptions::in_cluster(cluster));
    let _ = trainer_commands.set(handle.commands.clone());
    let mut view = if args.json || quiet {
        None
    } else if cluster_size > 1 {
        Some(Terminal::plain())
    } else {
        Some(Terminal::new())
    };
    let mut ctrl_c = interrupts.first.clone();
    let mut interrupted: Option<StopSignal> = None;
    let mut saved_at_once = None;
    let mut outcome: Result<Summary, String> =
        Err("the trainer ended without a result".to_string());
    loop {
        crossbeam_channel::select! {
            recv(handle.events) -> event => {
                let Ok(event) = event else { break };
                if args.json && !quiet {
                    println!(
                        "{}",
                        serde_json::to_string(&event).map_err(|e| e.to_string())?
                    );
                }
                match event {
                    Event::Finished(summary) => {
                        if let Some(v) = view.as_mut() {
                            v.finish(&summary);
                        }
                        outcome = Ok(summary);
                        break;
                    }
                    Event::Error(e) => {
                        if let Some(v) = view.as_mut() {
                            v.abandon();
                        }
                        outcome = Err(e);
                        break;
                    }
                    other => {
                        if let Event::Ready(info) = &other
                            && cluster_size > 1
                            && !quiet
                        {
                            let hint = cluster_stop::hint(info.params);
                            match view.as_ref() {
                                Some(v) => v.notice(&hint),
                                None => eprintln!("{hint}"),
                            }
                        }
                        if let Some(v) = view.as_mut() {
                            v.show(&other);
                        }
                    }
                }
            }
            recv(ctrl_c) -> got => {
                let Ok(signal) = got else {
                    ctrl_c = crossbeam_channel::never();
                    continue;
                };
                interrupted = Some(signal);
                saved_at_once = keep.saved();
                handle.stop();
                let line = if saved_at_once.is_some() {
                    format!("{}: stopping the ranks", signal.name())
                } else {
                    format!(
                        "{}: stopping after the current step and saving the final checkpoint \
                         (Ctrl-C again to quit now)",
                        signal.name()
                    )
                };
                let line = line.as_str();
                match view.as_ref() {
                    _ if quiet => {}
                    Some(v) => v.notice(line),
                    None => eprintln!("{line}"),
                }
            }
        }
    }
    if let Some(t) = handle.thread {
        let _ = t.join();
    }
    drop(interrupts);
    match (outcome, interrupted) {
        (Ok(_), None) => Ok(()),
        (Err(e), None) => Err(Failure::from(e)),
        // Said as it was saved.
        (_, Some(signal)) if saved_at_once.is_some() => {
            Err(Failure::stopped_by(signal.exit_code(), String::new()))
        }
        (Ok(summary), Some(signal)) => {
            // A cluster run resumes as it ran (any number of ranks works).
            let at = format!("stopped by {} at step {}", signal.name(), summary.steps);
            Err(Failure::stopped_by(
                signal.exit_code(),
                match &summary.final_model {
                    Some(path) => format!(
                        "{at}; final checkpoint: {}\n{}",
                        path.display(),
                        cluster_stop::resume_line(cluster_size, &program_name(), path)
                    ),
                    None => at,
                },
            ))
        }
        (Err(e), Some(signal)) => Err(Failure::stopped_by(
            signal.exit_code(),
            format!(
                "stopped by {} ({e}); nothing was saved by this run",
                signal.name()
            ),
        )),
    }
}

/// How this program was called (`cllm`, or its path), for commands to type.
fn program_name() -> String {
    std::env::args().next().unwrap_or_else(|| "cllm".into())
}

#[cfg(test)]
mod tests {
    use super::args::model_path;

    #[test]
    fn an_output_folder_gets_the_model_inside_it() {
        let dir = tempfile::tempdir().unwrap();
        let inside = dir.path().join("trained_model_kissing_spheres.cllm");
        assert_eq!(model_path(dir.path()), inside);
        let new_folder = dir.path().join("new/");
        assert_eq!(
            model_path(&new_folder),
            dir.path()
                .join("new")
                .join("trained_model_kissing_spheres.cllm")
        );
        let file = dir.path().join("mine.cllm");
        assert_eq!(model_path(&file), file);
    }
}
