//! The command's own output on stdout, ending quietly when the reader goes away.

/// `print!` for the command's own output. A reader that stops early (`sluice plugin inspect |
/// head`) closes the pipe: the output ends quietly there instead of panicking on the write.
macro_rules! out {
    ($($arg:tt)*) => { $crate::output::write_stdout(format_args!($($arg)*)) };
}

/// `println!`, the same way as [`out!`].
macro_rules! outln {
    ($($arg:tt)*) => { $crate::output::write_stdout(format_args!("{}\n", format_args!($($arg)*))) };
}

pub fn write_stdout(text: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    if let Err(err) = std::io::stdout().lock().write_fmt(text) {
        if err.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to standard output: {err}");
        std::process::exit(1);
    }
}
