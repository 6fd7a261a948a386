;; The WASI preview 1 functions Go's wasip1 runtime imports, for a Sluice handler.
;;
;; `go build -buildmode=c-shared` (GOOS=wasip1) imports 16 functions of wasi_snapshot_preview1
;; for its runtime and package os. The standard reactor adapter
;; (wasi-preview1-component-adapter-provider 48.0.8) maps them onto WASI 0.2, the descriptor
;; functions (fd_prestat_get, fd_read, fd_close, ...) onto wasi:filesystem, which the host never
;; grants, so that component is refused. This adapter, given to `wasm-tools component new --adapt
;; wasi_snapshot_preview1=...`, implements them with only what a handler may have:
;;   - clock_time_get, poll_oneoff (a sleep), random_get: WASI clocks and random, so the pipeline
;;     must grant `clocks` and `random` (Go's runtime reads both while it starts);
;;   - fd_write to stdout/stderr: one `sluice:plugin/log` line per text line, stdout at info and
;;     stderr at error, so a Go panic ("panic: ...") ends up in the dead letter's reason;
;;   - no arguments, no environment, no files: the fd functions answer EBADF, which Go's os and
;;     syscall packages take as "no such descriptor";
;;   - proc_exit (Go's fatal panic path): flushes the log lines, then traps.
;;
;; Scratch memory: the adapter shares Go's linear memory and has none of its own. Go's linker puts
;; nothing below address 12288 (4096 zero page + 8192 reserved for js/wasm's wasm_exec.js, unused
;; on wasip1), so the adapter keeps its state there:
;;   4096..4112   wall-clock result (seconds u64, nanoseconds u32)
;;   4096*fd+64   length of the pending line of fd 1 or 2
;;   4096*fd+128  the pending line, up to 3968 bytes (a longer line is split)
;; Errno values: 8 EBADF, 28 EINVAL, 58 ENOTSUP.
(module
  (import "env" "memory" (memory 0))
  (import "wasi:clocks/monotonic-clock@0.2.0" "now" (func $monotonic_now (result i64)))
  (import "wasi:clocks/monotonic-clock@0.2.0" "subscribe-duration" (func $subscribe_duration (param i64) (result i32)))
  (import "wasi:clocks/wall-clock@0.2.0" "now" (func $wall_now (param i32)))
  (import "wasi:io/poll@0.2.0" "[method]pollable.block" (func $block (param i32)))
  (import "wasi:io/poll@0.2.0" "[resource-drop]pollable" (func $drop_pollable (param i32)))
  (import "wasi:random/random@0.2.0" "get-random-u64" (func $random_u64 (result i64)))
  (import "sluice:plugin/log@0.1.0" "log" (func $log (param i32 i32 i32)))

  (func (export "sched_yield") (result i32) (i32.const 0))
  ;; Go exits only on a fatal error, after printing it.
  (func (export "proc_exit") (param i32) (call $flush (i32.const 1)) (call $flush (i32.const 2)) unreachable)
  (func (export "args_sizes_get") (param i32 i32) (result i32)
    (i32.store (local.get 0) (i32.const 0)) (i32.store (local.get 1) (i32.const 0)) (i32.const 0))
  (func (export "args_get") (param i32 i32) (result i32) (i32.const 0))
  (func (export "environ_sizes_get") (param i32 i32) (result i32)
    (i32.store (local.get 0) (i32.const 0)) (i32.store (local.get 1) (i32.const 0)) (i32.const 0))
  (func (export "environ_get") (param i32 i32) (result i32) (i32.const 0))
  (func (export "fd_close") (param i32) (result i32) (i32.const 8))
  (func (export "fd_read") (param i32 i32 i32 i32) (result i32) (i32.const 8))
  (func (export "fd_fdstat_get") (param i32 i32) (result i32) (i32.const 8))
  (func (export "fd_fdstat_set_flags") (param i32 i32) (result i32) (i32.const 8))
  (func (export "fd_prestat_get") (param i32 i32) (result i32) (i32.const 8))
  (func (export "fd_prestat_dir_name") (param i32 i32 i32) (result i32) (i32.const 8))

  ;; Clock 0 is real time, 1 monotonic; Go asks for no other.
  (func (export "clock_time_get") (param $id i32) (param $precision i64) (param $out i32) (result i32)
    (if (i32.eq (local.get $id) (i32.const 0))
      (then
        (call $wall_now (i32.const 4096))
        (i64.store (local.get $out)
          (i64.add (i64.mul (i64.load (i32.const 4096)) (i64.const 1000000000))
                   (i64.extend_i32_u (i32.load (i32.const 4104)))))
        (return (i32.const 0))))
    (if (i32.eq (local.get $id) (i32.const 1))
      (then (i64.store (local.get $out) (call $monotonic_now)) (return (i32.const 0))))
    (i32.const 28))

  (func (export "random_get") (param $buf i32) (param $len i32) (result i32)
    (local $r i64)
    (block $done
      (loop $words
        (br_if $done (i32.lt_u (local.get $len) (i32.const 8)))
        (i64.store (local.get $buf) (call $random_u64))
        (local.set $buf (i32.add (local.get $buf) (i32.const 8)))
        (local.set $len (i32.sub (local.get $len) (i32.const 8)))
        (br $words)))
    (local.set $r (call $random_u64))
    (block $done
      (loop $bytes
        (br_if $done (i32.eqz (local.get $len)))
        (i64.store8 (local.get $buf) (local.get $r))
        (local.set $r (i64.shr_u (local.get $r) (i64.const 8)))
        (local.set $buf (i32.add (local.get $buf) (i32.const 1)))
        (local.set $len (i32.sub (local.get $len) (i32.const 1)))
        (br $bytes)))
    (i32.const 0))

  ;; Go's scheduler sleeps with one relative clock subscription (usleep, netpoll with a timeout):
  ;; sleep until the first clock subscription's timeout and report it. Go has no descriptors to
  ;; wait on here, and never asks for an absolute deadline.
  (func (export "poll_oneoff") (param $in i32) (param $out i32) (param $n i32) (param $nevents i32) (result i32)
    (local $sub i32) (local $p i32)
    (local.set $sub (local.get $in))
    (block $found
      (loop $subs
        (if (i32.eqz (local.get $n)) (then (return (i32.const 58))))
        (br_if $found (i32.eqz (i32.load8_u offset=8 (local.get $sub))))
        (local.set $sub (i32.add (local.get $sub) (i32.const 48)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $subs)))
    (if (i32.and (i32.load16_u offset=40 (local.get $sub)) (i32.const 1))
      (then (return (i32.const 58))))
    (local.set $p (call $subscribe_duration (i64.load offset=24 (local.get $sub))))
    (call $block (local.get $p))
    (call $drop_pollable (local.get $p))
    (i64.store (local.get $out) (i64.load (local.get $sub)))
    (i32.store16 offset=8 (local.get $out) (i32.const 0))
    (i32.store8 offset=10 (local.get $out) (i32.const 0))
    (i32.store (local.get $nevents) (i32.const 1))
    (i32.const 0))

  (func (export "fd_write") (param $fd i32) (param $iovs i32) (param $n i32) (param $nwritten i32) (result i32)
    (local $ptr i32) (local $len i32) (local $j i32) (local $total i32)
    (if (i32.or (i32.eqz (local.get $fd)) (i32.gt_u (local.get $fd) (i32.const 2)))
      (then (return (i32.const 8))))
    (block $done
      (loop $iov
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $ptr (i32.load (local.get $iovs)))
        (local.set $len (i32.load offset=4 (local.get $iovs)))
        (local.set $j (i32.const 0))
        (block $bytes_done
          (loop $bytes
            (br_if $bytes_done (i32.ge_u (local.get $j) (local.get $len)))
            (call $put (local.get $fd) (i32.load8_u (i32.add (local.get $ptr) (local.get $j))))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br $bytes)))
        (local.set $total (i32.add (local.get $total) (local.get $len)))
        (local.set $iovs (i32.add (local.get $iovs) (i32.const 8)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $iov)))
    (i32.store (local.get $nwritten) (local.get $total))
    (i32.const 0))

  ;; Appends one byte to fd's pending line; a newline (not kept) or a full buffer sends it.
  (func $put (param $fd i32) (param $b i32)
    (local $base i32) (local $len i32)
    (if (i32.eq (local.get $b) (i32.const 10)) (then (call $flush (local.get $fd)) (return)))
    (local.set $base (i32.shl (local.get $fd) (i32.const 12)))
    (local.set $len (i32.load offset=64 (local.get $base)))
    (i32.store8 offset=128 (i32.add (local.get $base) (local.get $len)) (local.get $b))
    (local.set $len (i32.add (local.get $len) (i32.const 1)))
    (i32.store offset=64 (local.get $base) (local.get $len))
    (if (i32.ge_u (local.get $len) (i32.const 3968)) (then (call $flush (local.get $fd)))))

  ;; Sends fd's pending line to the host's log: fd 1 at info (2), fd 2 at error (4).
  (func $flush (param $fd i32)
    (local $base i32) (local $len i32)
    (local.set $base (i32.shl (local.get $fd) (i32.const 12)))
    (local.set $len (i32.load offset=64 (local.get $base)))
    (if (i32.eqz (local.get $len)) (then (return)))
    (call $sanitize (i32.add (local.get $base) (i32.const 128)) (local.get $len))
    (call $log (i32.shl (local.get $fd) (i32.const 1))
      (i32.add (local.get $base) (i32.const 128)) (local.get $len))
    (i32.store offset=64 (local.get $base) (i32.const 0)))

  ;; The host reads a log line as a string, and an invalid UTF-8 string would trap the handler:
  ;; every byte that does not start a well-formed UTF-8 sequence becomes '?'.
  (func $sanitize (param $p i32) (param $len i32)
    (local $i i32) (local $b i32) (local $n i32) (local $lo i32) (local $hi i32) (local $k i32) (local $c i32)
    (block $end
      (loop $chars
        (br_if $end (i32.ge_u (local.get $i) (local.get $len)))
        (local.set $b (i32.load8_u (i32.add (local.get $p) (local.get $i))))
        (local.set $lo (i32.const 0x80))
        (local.set $hi (i32.const 0xbf))
        (local.set $n (i32.const -1))
        (if (i32.lt_u (local.get $b) (i32.const 0x80)) (then (local.set $n (i32.const 0))))
        (if (i32.and (i32.ge_u (local.get $b) (i32.const 0xc2)) (i32.lt_u (local.get $b) (i32.const 0xe0)))
          (then (local.set $n (i32.const 1))))
        (if (i32.and (i32.ge_u (local.get $b) (i32.const 0xe0)) (i32.lt_u (local.get $b) (i32.const 0xf0)))
          (then (local.set $n (i32.const 2))))
        (if (i32.and (i32.ge_u (local.get $b) (i32.const 0xf0)) (i32.lt_u (local.get $b) (i32.const 0xf5)))
          (then (local.set $n (i32.const 3))))
        (if (i32.eq (local.get $b) (i32.const 0xe0)) (then (local.set $lo (i32.const 0xa0))))
        (if (i32.eq (local.get $b) (i32.const 0xed)) (then (local.set $hi (i32.const 0x9f))))
        (if (i32.eq (local.get $b) (i32.const 0xf0)) (then (local.set $lo (i32.const 0x90))))
        (if (i32.eq (local.get $b) (i32.const 0xf4)) (then (local.set $hi (i32.const 0x8f))))
        (block $bad
          (br_if $bad (i32.lt_s (local.get $n) (i32.const 0)))
          (br_if $bad (i32.ge_u (i32.add (local.get $i) (local.get $n)) (local.get $len)))
          (local.set $k (i32.const 1))
          (block $ok
            (loop $cont
              (br_if $ok (i32.gt_u (local.get $k) (local.get $n)))
              (local.set $c (i32.load8_u (i32.add (local.get $p) (i32.add (local.get $i) (local.get $k)))))
              (br_if $bad (i32.lt_u (local.get $c) (local.get $lo)))
              (br_if $bad (i32.gt_u (local.get $c) (local.get $hi)))
              (local.set $lo (i32.const 0x80))
              (local.set $hi (i32.const 0xbf))
              (local.set $k (i32.add (local.get $k) (i32.const 1)))
              (br $cont)))
          (local.set $i (i32.add (local.get $i) (i32.add (local.get $n) (i32.const 1))))
          (br $chars))
        (i32.store8 (i32.add (local.get $p) (local.get $i)) (i32.const 0x3f))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $chars)))))
