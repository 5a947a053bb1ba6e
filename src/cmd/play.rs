//! `vmtool play`: messages to the sound card through rodio (ALSA via cpal).
//!
//! The output stream is opened at the message's own rate with one channel, so
//! 8 kHz speech reaches ALSA untouched (ALSA's `plug` converts what the hardware
//! needs); only when the device refuses that is the stream opened at its own
//! configuration, and the message resampled first with the same band-limited
//! resampler `convert` uses. The source is added to the output mixer directly,
//! not through rodio's `Player` queue, whose first 512 samples of a non-48 kHz
//! source are played at the wrong rate.
//!
//! A message of INBOX or Urgent played to the end is marked heard the way
//! `vmtool read` does; a stopped or skipped one stays new.
//!
//! Built only with the `play` cargo feature (it links libasound); without it
//! the command says how to get it.

use super::prelude::*;

#[derive(Debug, Args)]
pub struct PlayArgs {
    /// Messages, folders or boxes (a box: its new messages, Urgent first)
    #[arg(value_name = "TARGET", required_unless_present = "list_devices")]
    pub targets: Vec<String>,
    /// Output device: an ALSA PCM name or a description from --list-devices [default: ALSA's default]
    #[arg(long, value_name = "NAME")]
    pub device: Option<String>,
    /// List the output devices and exit
    #[arg(long, conflicts_with = "device")]
    pub list_devices: bool,
    /// Do not mark new messages heard after playing them
    #[arg(long)]
    pub keep_new: bool,
    /// Play this audio file of each message (an extension as on disk: wav, WAV, gsm, …)
    #[arg(long, value_name = "EXT")]
    pub from_format: Option<String>,
    /// Show dates in UTC instead of the mailbox's zone
    #[arg(long)]
    pub utc: bool,
}

/// What `play` says in a build without the `play` feature.
#[cfg(not(feature = "play"))]
const NOT_BUILT: &str = "this vmtool was built without the `play` feature (the static \
     binary links no sound library): play a message through ALSA's own player with \
     `vmtool convert TARGET --stdout | aplay`, use the .deb/.rpm build, or rebuild with \
     `cargo build --release --features play` (needs libasound2-dev and pkg-config)";

/// `vmtool play`.
pub fn exec(
    setup: &Setup,
    g: &GlobalArgs,
    a: &PlayArgs,
    out: &mut dyn Write,
    rep: &mut Reporter,
) -> Result<Exit> {
    #[cfg(feature = "play")]
    {
        backend::run(setup, g, a, out, rep)
    }
    #[cfg(not(feature = "play"))]
    {
        let _ = (setup, g, a, out, rep);
        Err(crate::error::Error::Failed(NOT_BUILT.into()))
    }
}

/// Plays audio that is not a message (a greeting) the way `play` plays one:
/// same device choice, stream and keys; nothing is marked.
#[allow(clippy::too_many_arguments)]
pub fn play_pcm(
    setup: &Setup,
    g: &GlobalArgs,
    device: Option<&str>,
    label: &str,
    rate: u32,
    samples: &[i16],
    out: &mut dyn Write,
    rep: &mut Reporter,
) -> Result<Exit> {
    #[cfg(feature = "play")]
    {
        backend::play_pcm(setup, g, device, label, rate, samples, out, rep)
    }
    #[cfg(not(feature = "play"))]
    {
        let _ = (setup, g, device, label, rate, samples, out, rep);
        Err(crate::error::Error::Failed(NOT_BUILT.into()))
    }
}

/// `vmtool play --list-devices` (needs no spool).
pub fn list_devices(out: &mut dyn Write) -> Result<Exit> {
    #[cfg(feature = "play")]
    {
        backend::list_devices(out, &mut backend::AlsaLog::capture())
    }
    #[cfg(not(feature = "play"))]
    {
        let _ = out;
        Err(crate::error::Error::Failed(NOT_BUILT.into()))
    }
}

#[cfg(feature = "play")]
mod backend {
    use super::*;
    use crate::cmd::change::{self, ChangeArgs, ChangeKind};
    use crate::cmd::convert::{self, BoxScope, Picked};
    use crate::error::Error;
    use crate::render::{duration_text, sanitize};
    use rodio::cpal::traits::HostTrait;
    use rodio::cpal::{self, BufferSize};
    use rodio::{DeviceSinkBuilder, DeviceSinkError, DeviceTrait, MixerDeviceSink, Source};
    use std::cell::RefCell;
    use std::io::IsTerminal;
    use std::num::NonZero;
    use std::rc::Rc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    /// How often the progress line, the keys and Ctrl-C are looked at.
    const TICK: Duration = Duration::from_millis(50);
    /// A device that takes no audio for this long has stopped.
    const STALL: Duration = Duration::from_secs(10);

    /// What libasound would print on standard error, captured instead (it is
    /// shown with -v, and its gist goes into the error message).
    pub(super) struct AlsaLog(Option<Rc<RefCell<alsa::Output>>>);

    impl AlsaLog {
        pub(super) fn capture() -> AlsaLog {
            AlsaLog(alsa::Output::local_error_handler().ok())
        }

        /// The captured lines, and empties the buffer.
        fn take(&mut self) -> Vec<String> {
            let Some(out) = &self.0 else {
                return Vec::new();
            };
            let text = out.borrow().to_string();
            // A fresh handler starts a new buffer.
            self.0 = alsa::Output::local_error_handler().ok();
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect()
        }
    }

    /// The message part of a captured `function: message` line.
    fn alsa_gist(line: &str) -> &str {
        line.split_once(": ").map_or(line, |(_, m)| m).trim()
    }

    /// The one line for a device that cannot play: what failed, ALSA's first
    /// complaint (the cause; the rest follows from it) or cpal's reason.
    fn no_device(
        device: &cpal::Device,
        e: &DeviceSinkError,
        log: &mut AlsaLog,
        verbose: bool,
        rep: &mut Reporter,
    ) -> Error {
        let lines = log.take();
        if verbose {
            for l in &lines {
                rep.note(&format!("ALSA: {l}"));
            }
        }
        let id = pcm_id(device);
        let label = if id == "default" {
            "ALSA's default device".to_string()
        } else {
            format!("ALSA device {id}")
        };
        let (what, cause) = match e {
            DeviceSinkError::NoDevice => ("ALSA has no output device".to_string(), None),
            DeviceSinkError::DefaultSinkConfigError(c)
            | DeviceSinkError::SupportedConfigsError(c) => {
                (format!("{label} is unusable"), Some(c))
            }
            DeviceSinkError::BuildError(c) | DeviceSinkError::PlayError(c) => {
                (format!("{label} refused to open"), Some(c))
            }
            DeviceSinkError::UnsupportedSampleFormat => (
                format!("{label} has a sample format rodio cannot feed"),
                None,
            ),
        };
        let detail = match (lines.first(), cause) {
            (Some(l), _) => format!(" ({})", alsa_gist(l)),
            (None, Some(c)) => format!(
                " ({})",
                c.message()
                    .map_or_else(|| format!("{:?}", c.kind()), str::to_string)
            ),
            (None, None) => String::new(),
        };
        Error::Failed(format!(
            "no audio output device: {what}{detail} — use `vmtool convert` to export the message"
        ))
    }

    fn pcm_id(d: &cpal::Device) -> String {
        d.description()
            .ok()
            .and_then(|desc| desc.driver().map(str::to_string))
            .unwrap_or_else(|| d.to_string())
    }

    fn device_name(d: &cpal::Device) -> String {
        d.description()
            .map(|desc| desc.name().to_string())
            .unwrap_or_default()
    }

    pub(super) fn list_devices(out: &mut dyn Write, log: &mut AlsaLog) -> Result<Exit> {
        let host = cpal::default_host();
        let mut lines = vec![format!("{:<40} {}", "default", "ALSA's default output")];
        if let Ok(devices) = host.output_devices() {
            for d in devices {
                let id = pcm_id(&d);
                if id == "default" {
                    continue;
                }
                lines.push(format!("{id:<40} {}", device_name(&d)));
            }
        }
        log.take();
        for l in lines {
            writeln!(out, "{}", sanitize(&l)).map_err(out_err)?;
        }
        Ok(Exit::Ok)
    }

    /// `--device NAME`: an ALSA PCM name (as listed, or one ALSA canonicalises to
    /// it), else a description, exactly or as the one device whose description
    /// contains it.
    fn find_device(name: Option<&str>) -> Result<cpal::Device> {
        let host = cpal::default_host();
        let name = match name {
            None | Some("default") => {
                return host.default_output_device().ok_or_else(|| {
                    Error::Failed(
                        "no audio output device: ALSA has none — use `vmtool convert` to export the message"
                            .into(),
                    )
                })
            }
            Some(n) => n,
        };
        if let Ok(id) = format!("alsa:{name}").parse::<cpal::DeviceId>() {
            if let Some(d) = host.device_by_id(&id) {
                return Ok(d);
            }
        }
        let devices: Vec<cpal::Device> = host
            .output_devices()
            .map(|d| d.collect())
            .unwrap_or_default();
        if let Some(d) = devices.iter().find(|d| pcm_id(d) == name) {
            return Ok(d.clone());
        }
        let lower = name.to_lowercase();
        if let Some(d) = devices
            .iter()
            .find(|d| device_name(d).to_lowercase() == lower)
        {
            return Ok(d.clone());
        }
        let partial: Vec<&cpal::Device> = devices
            .iter()
            .filter(|d| {
                device_name(d).to_lowercase().contains(&lower)
                    || pcm_id(d).to_lowercase().contains(&lower)
            })
            .collect();
        match partial.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(Error::NotFound(format!(
                "no output device \"{name}\" (see vmtool play --list-devices)"
            ))),
            many => Err(Error::Ambiguous(format!(
                "output device \"{name}\" matches {}: give the ALSA name",
                many.iter()
                    .map(|d| pcm_id(d))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    type Errors = Arc<Mutex<Vec<String>>>;

    /// The stream at `rate` Hz, mono, when the device takes it (true), else at
    /// the device's own configuration (false).
    fn open_sink(
        device: &cpal::Device,
        rate: u32,
        errors: &Errors,
    ) -> std::result::Result<(MixerDeviceSink, bool), DeviceSinkError> {
        let errs = errors.clone();
        let callback = move |e: cpal::Error| {
            if let Ok(mut v) = errs.lock() {
                v.push(e.to_string());
            }
        };
        let period = (rate / 20).next_power_of_two().clamp(256, 4096);
        let native = DeviceSinkBuilder::from_device(device.clone())?
            .with_sample_rate(NonZero::new(rate).unwrap_or(NonZero::<u32>::MIN))
            .with_channels(NonZero::<u16>::MIN)
            .with_buffer_size(BufferSize::Fixed(period))
            .with_error_callback(callback.clone())
            .open_stream();
        let (mut sink, same) = match native {
            Ok(s) => (s, true),
            Err(_) => (
                DeviceSinkBuilder::from_device(device.clone())?
                    .with_error_callback(callback)
                    .open_sink_or_fallback()?,
                false,
            ),
        };
        sink.log_on_drop(false);
        Ok((sink, same))
    }

    /// The message as a rodio source: its samples, then enough silence to push
    /// them through the device's buffer, then the end, which it signals.
    struct PlaySource {
        samples: Vec<f32>,
        at: usize,
        pad: usize,
        rate: NonZero<u32>,
        position: Arc<AtomicUsize>,
        stop: Arc<AtomicBool>,
        done: Option<mpsc::Sender<()>>,
    }

    impl PlaySource {
        fn end(&mut self) -> Option<f32> {
            if let Some(tx) = self.done.take() {
                let _ = tx.send(());
            }
            None
        }
    }

    impl Iterator for PlaySource {
        type Item = f32;

        fn next(&mut self) -> Option<f32> {
            if self.stop.load(Ordering::Relaxed) {
                return self.end();
            }
            if let Some(&s) = self.samples.get(self.at) {
                self.at += 1;
                self.position.store(self.at, Ordering::Relaxed);
                return Some(s);
            }
            if self.pad > 0 {
                self.pad -= 1;
                return Some(0.0);
            }
            self.end()
        }
    }

    impl Source for PlaySource {
        fn current_span_len(&self) -> Option<usize> {
            None
        }
        fn channels(&self) -> rodio::ChannelCount {
            NonZero::<u16>::MIN
        }
        fn sample_rate(&self) -> rodio::SampleRate {
            self.rate
        }
        fn total_duration(&self) -> Option<Duration> {
            Some(Duration::from_secs_f64(
                self.samples.len() as f64 / f64::from(self.rate.get()),
            ))
        }
    }

    /// Single keys from a terminal on standard input, without echo or Enter;
    /// the terminal is restored on drop. Ctrl-C still raises SIGINT.
    struct Keys {
        saved: rustix::termios::Termios,
    }

    enum Key {
        Quit,
        Next,
    }

    impl Keys {
        fn new() -> Option<Keys> {
            use rustix::termios::{
                tcgetattr, tcsetattr, LocalModes, OptionalActions, SpecialCodeIndex,
            };
            let fd = rustix::stdio::stdin();
            if !std::io::stdin().is_terminal() {
                return None;
            }
            let saved = tcgetattr(fd).ok()?;
            let mut raw = saved.clone();
            raw.local_modes
                .remove(LocalModes::ICANON | LocalModes::ECHO);
            raw.special_codes[SpecialCodeIndex::VMIN] = 0;
            raw.special_codes[SpecialCodeIndex::VTIME] = 0;
            tcsetattr(fd, OptionalActions::Now, &raw).ok()?;
            Some(Keys { saved })
        }

        fn poll(&mut self) -> Option<Key> {
            let mut buf = [0u8; 16];
            let n = rustix::io::read(rustix::stdio::stdin(), &mut buf).ok()?;
            buf[..n].iter().find_map(|b| match b {
                b'q' | b'Q' | 0x1b => Some(Key::Quit),
                b'n' | b'N' => Some(Key::Next),
                _ => None,
            })
        }
    }

    impl Drop for Keys {
        fn drop(&mut self) {
            let _ = rustix::termios::tcsetattr(
                rustix::stdio::stdin(),
                rustix::termios::OptionalActions::Now,
                &self.saved,
            );
        }
    }

    enum Outcome {
        /// Played to the end.
        Finished,
        Quit,
        Skipped,
        Interrupted,
        Failed(String),
    }

    fn progress_bar(total: usize, show: bool) -> indicatif::ProgressBar {
        use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
        if !show || !std::io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let pb = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("  {bar:30} {msg}") {
            pb.set_style(style);
        }
        pb
    }

    /// Plays `samples` (at `rate`, mono) on an open sink until the end, a key,
    /// Ctrl-C or a device error.
    fn play_on(
        sink: &MixerDeviceSink,
        samples: Vec<f32>,
        rate: u32,
        errors: &Errors,
        keys: &mut Option<Keys>,
        pb: &indicatif::ProgressBar,
    ) -> Outcome {
        let total = samples.len();
        let config = sink.config();
        let sink_rate = config.sample_rate().get();
        let period = match config.buffer_size() {
            BufferSize::Fixed(n) => *n as usize,
            BufferSize::Default => (sink_rate / 10) as usize,
        };
        // cpal keeps two periods in ALSA's buffer: once three periods of silence
        // were taken after the message, all of it has been played. Counted at
        // the source's rate.
        let pad = 3 * period * rate as usize / sink_rate.max(1) as usize + 64;
        let position = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let Some(rate_nz) = NonZero::new(rate) else {
            return Outcome::Failed("sample rate 0".into());
        };
        sink.mixer().add(PlaySource {
            samples,
            at: 0,
            pad,
            rate: rate_nz,
            position: position.clone(),
            stop: stop.clone(),
            done: Some(tx),
        });
        let total_secs = total as f64 / f64::from(rate);
        let mut last_pos = 0;
        let mut last_move = Instant::now();
        let outcome = loop {
            match rx.recv_timeout(TICK) {
                Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                    break if position.load(Ordering::Relaxed) >= total {
                        Outcome::Finished
                    } else {
                        Outcome::Failed("playback ended early".into())
                    };
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if INTERRUPTED.load(Ordering::SeqCst) {
                break Outcome::Interrupted;
            }
            if let Some(k) = keys.as_mut().and_then(Keys::poll) {
                break match k {
                    Key::Quit => Outcome::Quit,
                    Key::Next => Outcome::Skipped,
                };
            }
            if let Some(e) = errors.lock().ok().and_then(|v| v.first().cloned()) {
                break Outcome::Failed(format!("audio device error: {e}"));
            }
            let pos = position.load(Ordering::Relaxed);
            if pos != last_pos {
                last_pos = pos;
                last_move = Instant::now();
            } else if pos < total && last_move.elapsed() > STALL {
                break Outcome::Failed(format!(
                    "the audio device took no audio for {} s",
                    STALL.as_secs()
                ));
            }
            pb.set_position(pos as u64);
            let secs = pos as f64 / f64::from(rate);
            pb.set_message(format!(
                "{} / {}   q: stop  n: next",
                duration_text(secs as u64),
                duration_text(total_secs.round() as u64)
            ));
        };
        stop.store(true, Ordering::Relaxed);
        outcome
    }

    /// The header line of a message.
    fn header(setup: &Setup, p: &Picked, a: &PlayArgs, ext: &str, rate: u32, n: usize) -> String {
        let meta = p.meta.as_ref();
        let who = meta
            .and_then(|m| m.callerid())
            .map(|c| {
                if c.is_unknown() {
                    return "unknown caller".to_string();
                }
                match (&c.name, &c.number) {
                    (Some(n), Some(num)) => format!("{n} <{num}>"),
                    (Some(n), None) => n.clone(),
                    (None, Some(num)) => num.clone(),
                    (None, None) => "unknown caller".into(),
                }
            })
            .unwrap_or_else(|| "unknown caller".into());
        let zone = setup.zone_for(&p.mb, a.utc);
        let when = meta
            .and_then(|m| m.origtime())
            .and_then(|t| zone.format(t, "%Y-%m-%d %H:%M %Z"))
            .unwrap_or_else(|| "date unknown".into());
        let secs = (n as f64 / f64::from(rate.max(1))).round() as u64;
        format!(
            "{}  {}  {}  {} ({}, {} Hz){}",
            p.describe(),
            who,
            when,
            duration_text(secs),
            ext,
            rate,
            if meta.is_some_and(|m| m.flag_urgent()) {
                "  urgent"
            } else {
                ""
            }
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn play_pcm(
        setup: &Setup,
        g: &GlobalArgs,
        device: Option<&str>,
        label: &str,
        rate: u32,
        samples: &[i16],
        out: &mut dyn Write,
        rep: &mut Reporter,
    ) -> Result<Exit> {
        let mut log = AlsaLog::capture();
        if samples.is_empty() {
            return Err(Error::Failed(format!(
                "{label}: nothing to play (no audio)"
            )));
        }
        let device = find_device(device)?;
        let errors: Errors = Arc::new(Mutex::new(Vec::new()));
        let (sink, same_rate) = match open_sink(&device, rate, &errors) {
            Ok(s) => s,
            Err(e) => return Err(no_device(&device, &e, &mut log, g.verbose, rep)),
        };
        log.take();
        if !setup.quiet {
            writeln!(out, "{}", setup.style.bold(&sanitize(label))).map_err(out_err)?;
            out.flush().map_err(out_err)?;
        }
        let mut f: Vec<f32> = samples.iter().map(|&s| convert::to_f32(s)).collect();
        let mut rate = rate;
        if !same_rate {
            let to = sink.config().sample_rate().get();
            f = convert::resample_f32(&f, rate, to).map_err(Error::Failed)?;
            rate = to;
        }
        let mut keys = Keys::new();
        let pb = progress_bar(f.len(), !setup.quiet);
        let outcome = play_on(&sink, f, rate, &errors, &mut keys, &pb);
        drop(sink);
        pb.finish_and_clear();
        log.take();
        match outcome {
            Outcome::Finished | Outcome::Skipped | Outcome::Quit => Ok(Exit::Ok),
            Outcome::Interrupted => Ok(Exit::Interrupted),
            Outcome::Failed(why) => Err(Error::Failed(format!("{label}: {why}"))),
        }
    }

    pub(super) fn run(
        setup: &Setup,
        g: &GlobalArgs,
        a: &PlayArgs,
        out: &mut dyn Write,
        rep: &mut Reporter,
    ) -> Result<Exit> {
        let mut log = AlsaLog::capture();
        let targets = setup.resolve_all(&a.targets, rep);
        let picked = convert::pick_messages(setup, &targets, BoxScope::NewOnly, false, rep);
        if picked.is_empty() {
            if !rep.failed() && !setup.quiet {
                rep.note("nothing to play: no messages there");
            }
            return Ok(rep.finish(0));
        }
        let device = find_device(a.device.as_deref())?;
        // Asking for the device's configuration is where a missing card shows:
        // say so once, before any message.
        if let Err(e) = DeviceSinkBuilder::from_device(device.clone()) {
            return Err(no_device(&device, &e, &mut log, g.verbose, rep));
        }
        log.take();
        let style = setup.style;
        let mut keys = Keys::new();
        let mut played = 0usize;
        for p in &picked {
            if INTERRUPTED.load(Ordering::SeqCst) {
                return Ok(Exit::Interrupted);
            }
            let decoded = match convert::choose_source(p, a.from_format.as_deref())
                .and_then(|ext| convert::decode_message(setup, p, &ext))
            {
                Ok(d) => d,
                Err(e) => {
                    rep.error(&e);
                    continue;
                }
            };
            if !setup.quiet {
                for w in &decoded.warnings {
                    rep.warn(&format!("{}: {w}", decoded.path.display()));
                }
            }
            if decoded.samples.is_empty() {
                rep.error(&Error::Failed(format!(
                    "{}: nothing to play (no audio in {})",
                    p.describe(),
                    decoded.path.display()
                )));
                continue;
            }
            let mut samples: Vec<f32> = decoded
                .samples
                .iter()
                .map(|&s| convert::to_f32(s))
                .collect();
            let errors: Errors = Arc::new(Mutex::new(Vec::new()));
            let (sink, same_rate) = match open_sink(&device, decoded.rate, &errors) {
                Ok(s) => s,
                Err(e) => return Err(no_device(&device, &e, &mut log, g.verbose, rep)),
            };
            if !setup.quiet {
                let line = header(
                    setup,
                    p,
                    a,
                    &decoded.ext,
                    decoded.rate,
                    decoded.samples.len(),
                );
                writeln!(out, "{}", style.bold(&sanitize(&line))).map_err(out_err)?;
                out.flush().map_err(out_err)?;
            }
            let mut rate = decoded.rate;
            if !same_rate {
                let to = sink.config().sample_rate().get();
                if g.verbose {
                    rep.note(&format!(
                        "the device refused {rate} Hz mono: resampling to {to} Hz"
                    ));
                }
                samples = convert::resample_f32(&samples, rate, to).map_err(Error::Failed)?;
                rate = to;
            }
            let pb = progress_bar(samples.len(), !setup.quiet);
            let outcome = play_on(&sink, samples, rate, &errors, &mut keys, &pb);
            // At once: an unpaced device (ALSA's null) would otherwise be fed
            // silence as fast as the CPU allows.
            drop(sink);
            pb.finish_and_clear();
            if g.verbose {
                for l in log.take() {
                    rep.note(&format!("ALSA: {l}"));
                }
            } else {
                log.take();
            }
            match outcome {
                Outcome::Finished => {
                    played += 1;
                    if p.folder.is_new() && !a.keep_new {
                        let args = ChangeArgs {
                            targets: vec![p.describe()],
                            dry_run: false,
                            yes: false,
                        };
                        change::exec(setup, g, &args, ChangeKind::Read, out, rep)?;
                    }
                }
                Outcome::Skipped => {
                    played += 1;
                    if !setup.quiet {
                        rep.note(&format!("skipped {}; it stays as it was", p.describe()));
                    }
                }
                Outcome::Quit => {
                    if !setup.quiet {
                        rep.note(&format!("stopped; {} stays as it was", p.describe()));
                    }
                    return Ok(rep.finish(played + 1));
                }
                Outcome::Interrupted => {
                    rep.note(&format!("interrupted; {} stays as it was", p.describe()));
                    return Ok(Exit::Interrupted);
                }
                Outcome::Failed(why) => {
                    rep.error(&Error::Failed(format!("{}: {why}", p.describe())));
                }
            }
        }
        Ok(rep.finish(played))
    }
}
