//! ffmpeg as RTMP publisher / player, as guarded children.

use super::procs::Child;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Publishes a µ-law 8 kHz mono sine to `url` in real time:
/// `ffmpeg -re -f lavfi -i sine=f=<freq>:d=<secs> -c:a pcm_mulaw -ar 8000 -ac 1 -f flv <url>`.
#[derive(Debug, Clone)]
pub struct Publisher {
    pub url: String,
    pub freq: u32,
    pub secs: f64,
    /// Audio codec (`pcm_mulaw` by default; e.g. `pcm_alaw`, `speex`, `nellymoser`, `aac`).
    pub codec: String,
    pub rate: u32,
    /// Channels (`-ac`), 1 by default.
    pub channels: u32,
    /// Seconds of silence before the tone (0 by default): a caller who starts speaking once
    /// the call is up.
    pub silence_before: f64,
}

impl Publisher {
    pub fn new(url: &str, freq: u32, secs: f64) -> Publisher {
        Publisher {
            url: url.to_string(),
            freq,
            secs,
            codec: "pcm_mulaw".into(),
            rate: 8000,
            channels: 1,
            silence_before: 0.0,
        }
    }

    /// The command line (for inspection).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-hide_banner", "-nostdin", "-loglevel", "info", "-re"])
            .args(["-f", "lavfi", "-i"])
            .arg(if self.silence_before > 0.0 {
                // Same level as lavfi's `sine` (1/8 of full scale).
                format!(
                    "aevalsrc=exprs='if(gte(t,{s}),0.125*sin(2*PI*{f}*t),0)':d={d}",
                    s = self.silence_before,
                    f = self.freq,
                    d = self.silence_before + self.secs
                )
            } else {
                format!("sine=f={}:d={}", self.freq, self.secs)
            })
            .args(["-c:a", &self.codec])
            .args(["-ar", &self.rate.to_string()])
            .args(["-ac", &self.channels.to_string()])
            .args(["-f", "flv"])
            .arg(&self.url);
        cmd
    }

    /// Starts it; logs go to `<dir>/<name>.out|.err`.
    pub fn spawn(&self, name: &str, dir: &Path) -> Child {
        Child::spawn(name, &mut self.command(), dir)
    }
}

/// Plays `url` into a WAV file:
/// `ffmpeg -analyzeduration 0 [-listen 1] -i <url> -t <secs> <out.wav>`.
#[derive(Debug, Clone)]
pub struct Player {
    pub url: String,
    pub secs: f64,
    pub out: PathBuf,
    /// Act as the RTMP server (`-listen 1`) instead of connecting: lets a publisher be tested
    /// without any relay.
    pub listen: bool,
}

impl Player {
    pub fn new(url: &str, secs: f64, out: &Path) -> Player {
        Player {
            url: url.to_string(),
            secs,
            out: out.to_path_buf(),
            listen: false,
        }
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-hide_banner", "-nostdin", "-loglevel", "info", "-y"])
            .args(["-analyzeduration", "0"]);
        if self.listen {
            cmd.args(["-listen", "1"]);
        }
        cmd.arg("-i")
            .arg(&self.url)
            .arg("-t")
            .arg(self.secs.to_string())
            .arg(&self.out);
        cmd
    }

    pub fn spawn(&self, name: &str, dir: &Path) -> Child {
        Child::spawn(name, &mut self.command(), dir)
    }
}
