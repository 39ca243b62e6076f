//! Rendering build events, like BuildKit's `--progress`: `plain` (one line per event, a RUN's
//! output prefixed with its step), `rawjson` (one JSON object per event), `tty` (finished
//! steps scroll by; below them a block with the build's time and one line per running step
//! of every stage with its elapsed time, redrawn ten times a second), `auto` (tty on a
//! terminal, else plain), `quiet`.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::build::progress::{Event, Reporter};

use super::error::{CliError, ExitKind};

/// A chosen renderer; `finish` ends the tty status line.
pub(super) struct Progress {
    reporter: Reporter,
    tty: Option<Arc<TtyState>>,
    ticker: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    /// The renderer for `--progress MODE` (`None`: nothing is shown).
    pub(super) fn new(
        mode: &str,
        quiet: bool,
        explain: bool,
    ) -> Result<Option<Progress>, CliError> {
        let mode = match mode {
            _ if quiet => return Ok(None),
            "quiet" => return Ok(None),
            "auto" if std::io::stderr().is_terminal() => "tty",
            "auto" => "plain",
            m @ ("plain" | "tty" | "rawjson") => m,
            other => {
                return Err(
                    CliError::new(ExitKind::Usage, format!("unknown --progress {other:?}"))
                        .hinted("use auto, plain, tty, rawjson or quiet"),
                )
            }
        };
        Ok(Some(match mode {
            "rawjson" => Progress {
                reporter: Arc::new(|e: &Event| eprintln!("{}", json(e))),
                tty: None,
                ticker: None,
            },
            "tty" => {
                let state = Arc::new(TtyState {
                    started: Instant::now(),
                    inner: Mutex::new(TtyInner::default()),
                    stop: AtomicBool::new(false),
                    explain,
                });
                let s = state.clone();
                let ticker = std::thread::spawn(move || {
                    while !s.stop.load(Ordering::Relaxed) {
                        std::thread::sleep(std::time::Duration::from_millis(100));
                        s.redraw(None);
                    }
                });
                let s = state.clone();
                Progress {
                    reporter: Arc::new(move |e: &Event| s.redraw(Some(e))),
                    tty: Some(state),
                    ticker: Some(ticker),
                }
            }
            _ => Progress {
                reporter: Arc::new(|e: &Event| {
                    if let Some(l) = plain(e) {
                        eprintln!("{l}");
                    }
                }),
                tty: None,
                ticker: None,
            },
        }))
    }

    /// What the build reports to.
    pub(super) fn reporter(&self) -> Reporter {
        self.reporter.clone()
    }

    /// Stops the status line (the summary follows on its own line).
    pub(super) fn finish(mut self) {
        if let Some(t) = &self.tty {
            t.stop.store(true, Ordering::Relaxed);
        }
        if let Some(h) = self.ticker.take() {
            let _ = h.join();
        }
        if let Some(t) = &self.tty {
            let drawn = t.inner.lock().expect("progress lock").drawn;
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "{}", clear_block(drawn));
            let _ = err.flush();
        }
    }
}

fn json(e: &Event) -> serde_json::Value {
    match e {
        Event::Step {
            id,
            stage,
            pos,
            total,
            text,
        } => {
            serde_json::json!({"id": id, "event": "step", "stage": stage, "pos": pos, "total": total, "text": text})
        }
        Event::Cached { id } => serde_json::json!({"id": id, "event": "cached"}),
        Event::Note { text } => serde_json::json!({"event": "note", "text": text}),
        Event::Miss { id, reason } => {
            serde_json::json!({"id": id, "event": "miss", "reason": reason})
        }
        Event::Output { id, line } => {
            serde_json::json!({"id": id, "event": "output", "line": line})
        }
        Event::Pulled {
            from,
            layers,
            bytes,
            secs,
        } => {
            serde_json::json!({"event": "pulled", "from": from, "layers": layers, "bytes": bytes, "secs": secs})
        }
        Event::Done { id, secs, detail } => {
            serde_json::json!({"id": id, "event": "done", "secs": secs, "detail": detail})
        }
    }
}

/// One plain line per event (`#3 [build 2/4] COPY . .`, `#3 CACHED`, `#3 miss: ...`,
/// `#3 | output`, `#3 DONE 0.4s`).
fn plain(e: &Event) -> Option<String> {
    Some(match e {
        Event::Step {
            id,
            stage,
            pos,
            total,
            text,
        } => format!("#{id} [{stage} {pos}/{total}] {text}"),
        Event::Cached { id } => format!("#{id} CACHED"),
        Event::Note { text } => format!("note: {text}"),
        Event::Miss { id, reason } => format!("#{id} miss: {reason}"),
        Event::Output { id, line } => format!("#{id} | {line}"),
        Event::Pulled { .. } => pulled(e),
        Event::Done { id, secs, detail } if detail.is_empty() => format!("#{id} DONE {secs:.1}s"),
        Event::Done { id, secs, detail } => format!("#{id} DONE {secs:.1}s ({detail})"),
    })
}

fn pulled(e: &Event) -> String {
    match e {
        Event::Pulled {
            from,
            layers,
            bytes,
            secs,
        } => format!(
            "pulled {layers} layer{} ({}) from {from} in {secs:.1}s",
            if *layers == 1 { "" } else { "s" },
            super::store::human(*bytes)
        ),
        _ => String::new(),
    }
}

struct TtyState {
    started: Instant,
    inner: Mutex<TtyInner>,
    stop: AtomicBool,
    /// Show miss reasons (`--explain-cache`).
    explain: bool,
}

#[derive(Default)]
struct TtyInner {
    /// Running steps: id, label, start.
    running: Vec<(usize, String, Instant)>,
    labels: std::collections::BTreeMap<usize, String>,
    done: usize,
    cached: usize,
    /// Lines of the live block on screen.
    drawn: usize,
}

/// Moves to the start of a live block of `lines` lines and clears to the end of the screen.
fn clear_block(lines: usize) -> String {
    if lines > 1 {
        format!("\x1b[{}A\r\x1b[J", lines - 1)
    } else {
        "\r\x1b[J".to_string()
    }
}

impl TtyState {
    /// Prints what an event finished above the status line, then redraws the status line.
    fn redraw(&self, e: Option<&Event>) {
        let mut st = self.inner.lock().expect("progress lock");
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "{}", clear_block(st.drawn));
        match e {
            Some(Event::Step {
                id,
                stage,
                pos,
                total,
                text,
            }) => {
                let label = format!("[{stage} {pos}/{total}] {text}");
                st.labels.insert(*id, label.clone());
                st.running.push((*id, label, Instant::now()));
            }
            Some(Event::Cached { id }) => {
                st.running.retain(|(i, _, _)| i != id);
                st.cached += 1;
                let label = st.labels.get(id).cloned().unwrap_or_default();
                let _ = writeln!(err, " => CACHED {label}");
            }
            Some(Event::Done { id, secs, .. }) => {
                st.running.retain(|(i, _, _)| i != id);
                st.done += 1;
                let label = st.labels.get(id).cloned().unwrap_or_default();
                let _ = writeln!(err, " => {label}  {secs:.1}s");
            }
            Some(Event::Miss { id, reason }) if self.explain => {
                let label = st.labels.get(id).cloned().unwrap_or_default();
                let _ = writeln!(err, " => {label}: {reason}");
            }
            Some(Event::Miss { .. }) => {}
            Some(Event::Note { text }) => {
                let _ = writeln!(err, "note: {text}");
            }
            Some(Event::Pulled { .. }) => {
                let _ = writeln!(err, " => {}", pulled(e.expect("some")));
            }
            Some(Event::Output { id, line }) => {
                let _ = writeln!(err, "    #{id} | {line}");
            }
            None => {}
        }
        let width = terminal_width().saturating_sub(1);
        let cut = |l: String| -> String { l.chars().take(width).collect() };
        let mut block = vec![cut(format!(
            "[+] Building {:.1}s ({} done, {} cached, {} running)",
            self.started.elapsed().as_secs_f64(),
            st.done,
            st.cached,
            st.running.len()
        ))];
        for (_, label, since) in &st.running {
            block.push(cut(format!(
                " => {label}  {:.1}s",
                since.elapsed().as_secs_f64()
            )));
        }
        st.drawn = block.len();
        let _ = write!(err, "{}", block.join("\n"));
        let _ = err.flush();
    }
}

fn terminal_width() -> usize {
    rustix::termios::tcgetwinsize(std::io::stderr())
        .map(|w| w.ws_col as usize)
        .ok()
        .filter(|w| *w > 20)
        .unwrap_or(100)
}
