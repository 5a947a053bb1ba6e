//! Encode throughput benchmark and an encode-to-file tool for comparing with sox.
//!
//! ```text
//! encode_bench FORMAT IN.raw OUT   encode raw s16le mono samples as FORMAT (a format=
//!                                  token: gsm, wav49, wav, ulaw, alaw, sln, ...)
//! ```
//!
//! For `gsm` the output has the bytes of
//! `sox -t raw -r 8000 -e signed -b 16 -c 1 IN.raw -t gsm OUT`.

use std::io::Read;
use std::process::ExitCode;

use vmtool::audio::{encode_to, AudioFormat};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [format, input, output] = args.as_slice() else {
        eprintln!("usage: encode_bench FORMAT IN.raw OUT");
        return ExitCode::from(2);
    };
    let samples = match read_raw(input) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{input}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let format = AudioFormat::from_extension(format);
    let rate = format.sample_rate().unwrap_or(8000);
    let result = std::fs::File::create(output)
        .map_err(vmtool::audio::EncodeError::from)
        .and_then(|f| encode_to(&format, &samples, rate, f));
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{output}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Raw s16le samples, read in chunks straight into the sample buffer.
fn read_raw(path: &str) -> std::io::Result<Vec<i16>> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len() as usize;
    let mut samples = Vec::with_capacity(len / 2);
    let mut buf = vec![0u8; 64 * 1024];
    let mut carry: Option<u8> = None;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(samples);
        }
        let mut bytes = &buf[..n];
        if let Some(lo) = carry.take() {
            samples.push(i16::from_le_bytes([lo, bytes[0]]));
            bytes = &bytes[1..];
        }
        let pairs = bytes.chunks_exact(2);
        carry = pairs.remainder().first().copied();
        samples.extend(pairs.map(|b| i16::from_le_bytes([b[0], b[1]])));
    }
}
