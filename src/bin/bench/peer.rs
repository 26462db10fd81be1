//! Running the PyTorch side: `bench/peer.py` and the other Python references, each printing its
//! result as JSON on the last line of its stdout.

use std::process::Command;

use crate::{Args, threads};

/// The Python with torch: `--python`, else `$FB_PYTHON`, else `python3`.
pub fn python(a: &Args) -> String {
    a.python
        .clone()
        .or_else(|| std::env::var("FB_PYTHON").ok())
        .unwrap_or_else(|| "python3".into())
}

/// Runs `bench/peer.py BENCH ARGS --threads N [--device cuda] PEER_ARGS` and returns its JSON.
pub fn run(a: &Args, bench: &str, args: &[&str]) -> serde_json::Value {
    let mut cmd = Command::new(python(a));
    cmd.args(["bench/peer.py", bench])
        .args(args)
        .args(["--threads", &threads().to_string()]);
    if a.cuda() {
        cmd.args(["--device", "cuda"]);
    }
    cmd.args(a.peer_args.split_whitespace());
    last_json_line(cmd)
}

/// Runs a command that prints its result as JSON on its last line of stdout.
pub fn last_json_line(mut cmd: Command) -> serde_json::Value {
    eprintln!("running {cmd:?}");
    let out = cmd.output().expect("start the command");
    if !out.status.success() {
        panic!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or("{}")).expect("JSON on the last line")
}
