//! Processes of this machine: the lab's commands run in the process that carries them.

/// Whether a process of this host with id `pid` exists: `/proc/<pid>` on Linux, `kill -0` on
/// other Unix systems (a process of another user answers "not permitted": it exists), and
/// `tasklist` on Windows. When the check itself cannot run, the process counts as alive, so a
/// run is never declared interrupted on a guess.
pub fn process_alive(pid: u32) -> bool {
    use std::process::{Command, Stdio};
    if cfg!(target_os = "linux") {
        return std::path::Path::new(&format!("/proc/{pid}")).exists();
    }
    if cfg!(windows) {
        return Command::new("tasklist")
            .args(["/FI", &format!("PID eq {pid}"), "/NH", "/FO", "CSV"])
            .stderr(Stdio::null())
            .output()
            .map_or(true, |o| {
                String::from_utf8_lossy(&o.stdout).contains(&format!("\"{pid}\""))
            });
    }
    match Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stdout(Stdio::null())
        .output()
    {
        Ok(o) if o.status.success() => true,
        Ok(o) => String::from_utf8_lossy(&o.stderr).contains("not permitted"),
        Err(_) => true,
    }
}
