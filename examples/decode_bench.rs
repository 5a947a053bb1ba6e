//! Decode throughput benchmark and a decode-to-file tool for comparing with sox.
//!
//! ```text
//! decode_bench wav  IN EXT OUT.wav  decode IN, write a 16-bit PCM WAV
//! decode_bench raw  IN EXT OUT.raw  decode IN, write raw s16le samples
//! decode_bench time IN EXT [REPS]   decode REPS times in-process: audio s per CPU s
//! decode_bench make SPOOL DIR [SECS] concatenate SPOOL's msg*.{gsm,WAV,wav} audio,
//!                                    repeated to SECS (600), into DIR/bench.{gsm,WAV,wav}
//! ```
//!
//! `wav` writes the same bytes as `sox -D IN -e signed -b 16 OUT.wav`. (Plain
//! `sox -D IN OUT.wav` keeps GSM input GSM-encoded, i.e. decodes *and* re-encodes.)
//!
//! CPU time comes from `/proc/self/schedstat` (Linux), wall time elsewhere.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use vmtool::audio::riff::WaveLayout;
use vmtool::audio::{open, AudioError};

/// Decode into `out` (after room for a WAV header when `wav`): rate and sample count.
fn decode_to(
    path: &Path,
    ext: &str,
    out: &mut impl Write,
    wav: bool,
) -> Result<(u32, u64), AudioError> {
    let mut dec = open(path, ext)?;
    if wav {
        // Sizes are patched below once known; a 44-byte canonical header.
        out.write_all(&[0u8; 44])?;
    }
    let mut block = Vec::with_capacity(4096);
    let mut bytes = Vec::with_capacity(8192);
    let mut n = 0u64;
    loop {
        block.clear();
        if dec.next_block(&mut block)? == 0 {
            break;
        }
        bytes.clear();
        for s in &block {
            bytes.extend_from_slice(&s.to_le_bytes());
        }
        out.write_all(&bytes)?;
        n += block.len() as u64;
    }
    for w in dec.warnings() {
        eprintln!("warning: {w}");
    }
    Ok((dec.sample_rate(), n))
}

fn wav_header(rate: u32, samples: u64) -> [u8; 44] {
    let data = (samples * 2).min(u64::from(u32::MAX - 36)) as u32;
    let mut h = [0u8; 44];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&(36 + data).to_le_bytes());
    h[8..16].copy_from_slice(b"WAVEfmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes());
    h[22..24].copy_from_slice(&1u16.to_le_bytes());
    h[24..28].copy_from_slice(&rate.to_le_bytes());
    h[28..32].copy_from_slice(&(rate * 2).to_le_bytes());
    h[32..34].copy_from_slice(&2u16.to_le_bytes());
    h[34..36].copy_from_slice(&16u16.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data.to_le_bytes());
    h
}

/// CPU time of this process so far, when the OS tells.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/schedstat").ok()?;
    let ns: u64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Every file with extension `ext` under `dir`, sorted.
fn find(dir: &Path, ext: &str, out: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for p in entries {
        if p.is_dir() {
            find(&p, ext, out)?;
        } else if p.extension().is_some_and(|e| e == ext) {
            out.push(p);
        }
    }
    Ok(())
}

/// The audio bytes of one file: all of a `.gsm`, the data chunk of a RIFF file.
fn audio_bytes(path: &Path, riff: bool) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let bytes = std::fs::read(path)?;
    if !riff {
        return Ok(bytes);
    }
    let layout = WaveLayout::read(&mut std::io::Cursor::new(&bytes), bytes.len() as u64)?;
    let start = layout.data_start() as usize;
    let end = (start + layout.data.size as usize).min(bytes.len());
    Ok(bytes[start..end].to_vec())
}

/// Build DIR/bench.{gsm,WAV,wav} of at least `secs` seconds each.
fn make(spool: &Path, dir: &Path, secs: f64) -> Result<(), Box<dyn std::error::Error>> {
    // (extension, bytes per second, header of the first file to reuse)
    for (ext, rate, header) in [
        ("gsm", 1650.0, 0),
        ("WAV", 1625.0, 60),
        ("wav", 16000.0, 44),
    ] {
        let mut files = Vec::new();
        find(spool, ext, &mut files)?;
        let first = files.first().ok_or(format!("no .{ext} files"))?;
        let mut one = Vec::new();
        for f in &files {
            one.extend(audio_bytes(f, header > 0)?);
        }
        let reps = (secs * rate / one.len() as f64).ceil() as usize;
        let data = one.repeat(reps.max(1));
        let mut out = std::fs::read(first)?;
        out.truncate(header);
        let size = |at: usize, v: usize, out: &mut Vec<u8>| {
            out[at..at + 4].copy_from_slice(&(v as u32).to_le_bytes())
        };
        if ext == "WAV" {
            size(4, 52 + data.len(), &mut out);
            size(48, data.len() / 65 * 320, &mut out);
            size(56, data.len(), &mut out);
        } else if ext == "wav" {
            size(4, 36 + data.len(), &mut out);
            size(40, data.len(), &mut out);
        }
        out.extend_from_slice(&data);
        let path = dir.join(format!("bench.{ext}"));
        std::fs::write(&path, &out)?;
        println!("{}: {:.1} s", path.display(), data.len() as f64 / rate);
    }
    Ok(())
}

fn run(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    match args {
        [mode, spool, dir, rest @ ..] if mode == "make" => {
            let secs = match rest.first() {
                Some(s) => s.parse()?,
                None => 600.0,
            };
            make(Path::new(spool), Path::new(dir), secs)
        }
        [mode, input, ext, output] if mode == "wav" || mode == "raw" => {
            let wav = mode == "wav";
            let file = std::fs::File::create(output)?;
            let mut out = BufWriter::with_capacity(64 * 1024, file);
            let (rate, n) = decode_to(Path::new(input), ext, &mut out, wav)?;
            let mut file = out.into_inner()?;
            if wav {
                use std::io::{Seek, SeekFrom};
                file.seek(SeekFrom::Start(0))?;
                file.write_all(&wav_header(rate, n))?;
            }
            Ok(())
        }
        [mode, input, ext, rest @ ..] if mode == "time" => {
            let reps: u32 = match rest.first() {
                Some(r) => r.parse()?,
                None => 5,
            };
            let mut total = 0u64;
            let mut rate = 8000;
            let start = Instant::now();
            let cpu_start = cpu_time();
            for _ in 0..reps {
                let mut dec = open(Path::new(input), ext)?;
                rate = dec.sample_rate();
                let mut block = Vec::with_capacity(4096);
                loop {
                    block.clear();
                    let n = dec.next_block(&mut block)?;
                    if n == 0 {
                        break;
                    }
                    total += n as u64;
                }
            }
            let wall = start.elapsed().as_secs_f64();
            let (secs, clock) = match (cpu_start, cpu_time()) {
                (Some(a), Some(b)) => ((b - a).as_secs_f64(), "CPU"),
                _ => (wall, "wall"),
            };
            let audio = total as f64 / f64::from(rate);
            println!(
                "{input}: {audio:.1} s of audio in {secs:.3} s {clock} ({wall:.3} s wall): \
                 {:.0} s of audio per {clock} second",
                audio / secs
            );
            Ok(())
        }
        _ => Err(
            "usage: decode_bench wav|raw IN EXT OUT | time IN EXT [REPS] | make SPOOL DIR [SECS]"
                .into(),
        ),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("decode_bench: {e}");
            ExitCode::FAILURE
        }
    }
}
