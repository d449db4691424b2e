//! Encoding and decoding a frame allocates nothing, neither in Rust nor inside libspeex.
//!
//! This test binary defines `malloc`, `calloc`, `realloc` and `free` itself (forwarding to
//! glibc's `__libc_*`), so every heap call of the process, libspeex's included (the linker
//! binds the shared library's references to the executable's definitions), is seen here and
//! counted while the calling thread asks for it. The test first checks that libspeex's
//! coder creation *is* counted, so it cannot pass by counting nothing.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::cell::Cell;
use std::ffi::c_void;

use skybridge_codecs_sys::{
    SpeexDecoder, SpeexEncoder, SpeexEncoderSettings, SpeexMode, MAX_FRAMES_PER_PACKET,
};

thread_local! {
    // Const-initialised and without destructors: reading them never allocates, so they are
    // usable inside malloc.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static CALLS: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    if COUNTING.with(Cell::get) {
        CALLS.with(|c| c.set(c.get() + 1));
    }
}

extern "C" {
    fn __libc_malloc(size: usize) -> *mut c_void;
    fn __libc_calloc(n: usize, size: usize) -> *mut c_void;
    fn __libc_realloc(ptr: *mut c_void, size: usize) -> *mut c_void;
    fn __libc_free(ptr: *mut c_void);
}

/// # Safety
/// The C `malloc` contract; forwards to glibc's.
#[no_mangle]
unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    note();
    // SAFETY: glibc's allocator, called with the caller's arguments unchanged.
    unsafe { __libc_malloc(size) }
}

/// # Safety
/// The C `calloc` contract; forwards to glibc's.
#[no_mangle]
unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    note();
    // SAFETY: as in `malloc`.
    unsafe { __libc_calloc(n, size) }
}

/// # Safety
/// The C `realloc` contract; forwards to glibc's.
#[no_mangle]
unsafe extern "C" fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    note();
    // SAFETY: as in `malloc`; `ptr` came from this same allocator (every allocation of the
    // process goes through these functions).
    unsafe { __libc_realloc(ptr, size) }
}

/// # Safety
/// The C `free` contract; forwards to glibc's.
#[no_mangle]
unsafe extern "C" fn free(ptr: *mut c_void) {
    note();
    // SAFETY: as in `realloc`.
    unsafe { __libc_free(ptr) }
}

/// Runs `f` and returns its result with the heap calls (allocations, reallocations and frees)
/// this thread made meanwhile.
fn counted<T>(f: impl FnOnce() -> T) -> (T, u64) {
    CALLS.with(|c| c.set(0));
    COUNTING.with(|c| c.set(true));
    let out = f();
    COUNTING.with(|c| c.set(false));
    (out, CALLS.with(Cell::get))
}

fn tone(rate: u32, n: usize) -> Vec<i16> {
    (0..n)
        .map(|i| {
            (8000.0 * (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / f64::from(rate)).sin())
                as i16
        })
        .collect()
}

#[test]
fn encoding_and_decoding_frames_makes_no_heap_call_in_rust_or_libspeex() {
    let cheap_high_band = SpeexEncoderSettings {
        quality: 9,
        complexity: 3,
        high_band_mode: Some(1),
    };
    // Creating a coder is libspeex's calloc of its state and bit buffer (the Rust value holds
    // no heap memory of its own): proof that its heap calls are seen.
    let (wideband, init_calls) = counted(|| SpeexEncoder::new(SpeexMode::Wideband, 8).unwrap());
    assert!(
        init_calls >= 2,
        "libspeex's allocations must be seen ({init_calls} heap calls), else this test counts nothing"
    );
    let mut encoders = vec![
        wideband,
        SpeexEncoder::new(SpeexMode::Narrowband, 8).unwrap(),
        SpeexEncoder::with_settings(SpeexMode::Wideband, cheap_high_band).unwrap(),
        SpeexEncoder::narrowband_for_wideband(SpeexEncoderSettings::new(10)).unwrap(),
    ];
    let mut decoders: Vec<SpeexDecoder> = encoders
        .iter()
        .map(|e| SpeexDecoder::new(e.stream_mode()).unwrap())
        .collect();
    let pcm8 = tone(8000, 160 * MAX_FRAMES_PER_PACKET);
    let pcm16 = tone(16000, 320 * MAX_FRAMES_PER_PACKET);
    let mut pkt = vec![0u8; 1200];
    let mut out = vec![0i16; 320 * MAX_FRAMES_PER_PACKET];
    let mut run = |encoders: &mut [SpeexEncoder], decoders: &mut [SpeexDecoder]| {
        for (enc, dec) in encoders.iter_mut().zip(decoders.iter_mut()) {
            let pcm = match enc.mode() {
                SpeexMode::Narrowband => &pcm8,
                SpeexMode::Wideband => &pcm16,
            };
            let f = enc.mode().frame_samples();
            for frames in [1, 3, MAX_FRAMES_PER_PACKET] {
                let n = enc.encode(&pcm[..f * frames], &mut pkt).unwrap();
                let got = dec.decode(Some(&pkt[..n]), &mut out).unwrap();
                assert_eq!(got, dec.mode().frame_samples() * frames);
            }
            dec.decode(None, &mut out).unwrap();
        }
    };
    // Warm-up outside the count, then the same work counted.
    run(&mut encoders, &mut decoders);
    let ((), calls) = counted(|| {
        for _ in 0..20 {
            run(&mut encoders, &mut decoders);
        }
    });
    assert_eq!(calls, 0, "heap calls while coding frames");
}
