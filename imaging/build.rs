//! Builds `csrc/jpeg_decode.c` (see `src/libjpeg.rs`) against the libjpeg-turbo headers that
//! `turbojpeg-sys` installs and exports as `DEP_TURBOJPEG_INCLUDE`, so the C code sees exactly
//! the struct layouts of the library it is linked with.

fn main() {
    println!("cargo:rerun-if-changed=csrc/jpeg_decode.c");
    let include = std::env::var("DEP_TURBOJPEG_INCLUDE").expect(
        "turbojpeg-sys exported no include directory (DEP_TURBOJPEG_INCLUDE): build it from its \
         bundled source (the `cmake` feature), or point TURBOJPEG_INCLUDE_DIR at the directory \
         holding jpeglib.h",
    );
    let mut build = cc::Build::new();
    for dir in include.split(',').filter(|d| !d.is_empty()) {
        build.include(dir);
    }
    build
        .file("csrc/jpeg_decode.c")
        .warnings(true)
        .extra_warnings(true)
        .compile("pp_jpeg_decode");
}
