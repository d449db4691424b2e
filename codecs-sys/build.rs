//! Links the system's libspeex (Debian `libspeex-dev`) found through pkg-config.

fn main() {
    if let Err(e) = pkg_config::Config::new()
        .atleast_version("1.2")
        .probe("speex")
    {
        panic!("libspeex >= 1.2 not found by pkg-config ({e}); run scripts/install-deps.sh");
    }
}
