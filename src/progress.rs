//! Progress bars and log output that do not trample each other.
//!
//! On a terminal, long work shows an indicatif bar (rate and ETA); log lines are printed above
//! the bars. Elsewhere (CI, a pipe) bars are hidden and progress is logged every few seconds
//! instead, so a long run never looks hung.

use std::io::{self, Write};
use std::sync::LazyLock;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

static MULTI: LazyLock<MultiProgress> =
    LazyLock::new(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));

/// Prints a line to stderr above any progress bars.
pub fn println(msg: impl AsRef<str>) {
    MULTI.suspend(|| {
        let _ = writeln!(io::stderr(), "{}", msg.as_ref());
    });
}

/// A progress counter for one piece of work.
pub struct Progress {
    bar: ProgressBar,
    what: String,
    hidden: bool,
    started: Instant,
    last_log: Mutex<Instant>,
}

impl Progress {
    /// `len` units of `what` (for example "images").
    pub fn new(len: u64, what: &str) -> Progress {
        let bar = MULTI.add(ProgressBar::new(len));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>10} [{bar:30}] {human_pos}/{human_len} {msg} {per_sec} ETA {eta}",
            )
            .expect("template")
            .progress_chars("=> "),
        );
        bar.set_prefix(what.to_string());
        let hidden = bar.is_hidden();
        Progress {
            bar,
            what: what.to_string(),
            hidden,
            started: Instant::now(),
            last_log: Mutex::new(Instant::now()),
        }
    }

    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
        if self.hidden {
            let mut last = self.last_log.lock().unwrap();
            if last.elapsed() >= Duration::from_secs(10) {
                *last = Instant::now();
                let pos = self.bar.position();
                let len = self.bar.length().unwrap_or(0);
                let secs = self.started.elapsed().as_secs_f64();
                let rate = pos as f64 / secs.max(1e-9);
                let eta = if rate > 0.0 {
                    (len.saturating_sub(pos)) as f64 / rate
                } else {
                    0.0
                };
                tracing::info!(
                    "{}: {pos}/{len} ({rate:.1}/s, ETA {:.0}s) {}",
                    self.what,
                    eta,
                    self.bar.message()
                );
            }
        }
    }

    pub fn set_message(&self, msg: impl Into<String>) {
        self.bar.set_message(msg.into());
    }

    pub fn position(&self) -> u64 {
        self.bar.position()
    }

    pub fn set_position(&self, pos: u64) {
        self.bar.set_position(pos);
    }

    /// Seconds since the counter was made.
    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
        MULTI.remove(&self.bar);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if !self.bar.is_finished() {
            self.bar.finish_and_clear();
        }
        MULTI.remove(&self.bar);
    }
}

/// A `tracing` writer that prints above the progress bars.
pub struct LogWriter;

pub struct LineWriter {
    buf: Vec<u8>,
}

impl Write for LineWriter {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        MULTI.suspend(|| {
            let _ = io::stderr().write_all(&buf);
        });
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LineWriter;
    fn make_writer(&'a self) -> LineWriter {
        LineWriter { buf: Vec::new() }
    }
}

/// Sets up logging: `RUST_LOG` if set, else `info` (or `warn` when quiet).
pub fn init_logging(verbose: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if verbose { "debug" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(LogWriter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .compact()
        .try_init();
}
