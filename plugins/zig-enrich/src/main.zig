//! zig-enrich: the `json-enrich` handler (plugins/json-enrich/src/lib.rs) written in Zig.
//!
//! Validates the event envelope our users send, enriches it and routes it by type. Envelope:
//! `event_type`, `event_id`, `timestamp`, `version`, `data` (object) and `metadata` (`producer`,
//! optional `trace_id`, `correlation_id`). A payload that is not such an envelope is rejected as
//! `invalid` with the reason. Valid events get `processed_at` (the host's receive time, ms since
//! the Unix epoch) and `processed_by`, an `event-type` header, and a route chosen by the part of
//! `event_type` before the first dot, from `init` settings `route.<prefix>: <sink>`.
//!
//! The ABI comes from the C bindings `sluice plugin bindings c` generates from wit/ (world
//! `enrich`), imported with @cImport; see scripts/build-handlers.sh. Their ownership rules: the
//! arguments of an export are ours to free, and everything in a return value must come from
//! malloc (the generated post-return code frees it once the host has copied it).
const std = @import("std");
const number = @import("number.zig");
const c = @cImport(@cInclude("enrich.h"));

const Message = c.exports_sluice_plugin_message_handler_message_t;
const Output = c.exports_sluice_plugin_message_handler_output_t;
const Outputs = c.exports_sluice_plugin_message_handler_list_output_t;
const HandlerError = c.exports_sluice_plugin_message_handler_handler_error_t;
const Settings = c.enrich_list_tuple2_string_string_t;

/// Memory handed to the bindings must be malloc's own: raw_c_allocator calls malloc directly,
/// where c_allocator may offset its pointers for alignment.
const gpa = std.heap.raw_c_allocator;

const processed_by = "sluice/json-enrich";
const route_prefix = "route.";
/// serde_json refuses the 128th level of nested arrays and objects.
const max_depth = 128;

/// Without this, a panic would print to stderr through WASI, which handlers do not get. The host
/// puts the last "panic: " line a guest logged into the trap's dead-letter reason.
pub const panic = std.debug.FullPanic(logAndTrap);

fn logAndTrap(msg: []const u8, _: ?usize) noreturn {
    const prefix = "panic: ";
    var line: [1024]u8 = undefined;
    var n = @min(msg.len, line.len - prefix.len);
    // Cut at a character boundary: the host refuses a string that is not UTF-8.
    while (n < msg.len and n > 0 and msg[n] & 0xc0 == 0x80) n -= 1;
    @memcpy(line[0..prefix.len], prefix);
    @memcpy(line[prefix.len..][0..n], msg[0..n]);
    var text = c.enrich_string_t{ .ptr = &line, .len = prefix.len + n };
    c.sluice_plugin_log_log(c.SLUICE_PLUGIN_LOG_LEVEL_ERROR, &text);
    @trap();
}

fn bytes(ptr: [*c]u8, len: usize) []u8 {
    return if (len == 0) &.{} else ptr[0..len];
}

/// `fmt` formatted into malloc'd memory, for a return value. (Not std.fmt.allocPrint: see Growing.)
fn print(comptime fmt: []const u8, args: anytype) []u8 {
    var w = Growing.init();
    w.print(fmt, args) catch oom();
    return w.buffered();
}

/// A malloc'd copy of `s`, for a return value.
fn cString(s: []const u8) c.enrich_string_t {
    var out: c.enrich_string_t = undefined;
    c.enrich_string_dup_n(&out, s.ptr, s.len);
    return out;
}

// --- init ----------------------------------------------------------------------------------------

/// The `init` settings, kept as they came: every key is `route.<event type prefix>` and every
/// value a sink. Null until `init` has run.
var routes: ?Settings = null;

export fn exports_sluice_plugin_lifecycle_init(config: *Settings, err: *c.enrich_string_t) bool {
    const settings = if (config.len == 0) &.{} else config.ptr[0..config.len];
    const problem: ?[]u8 = for (settings) |setting| {
        const key = bytes(setting.f0.ptr, setting.f0.len);
        if (key.len <= route_prefix.len or !std.mem.startsWith(u8, key, route_prefix) or setting.f1.len == 0) {
            break print("unknown setting `{s}` (expected `route.<event type prefix>: <sink>`)", .{key});
        }
    } else if (routes != null) print("init called twice", .{}) else null;
    if (problem) |reason| {
        c.enrich_list_tuple2_string_string_free(config);
        err.* = .{ .ptr = reason.ptr, .len = reason.len };
        return false;
    }
    routes = config.*;
    return true;
}

fn routeFor(event_type: []const u8) ?[]const u8 {
    const settings = routes orelse return null;
    const prefix = event_type[0 .. std.mem.indexOfScalar(u8, event_type, '.') orelse event_type.len];
    for (settings.ptr[0..settings.len]) |setting| {
        const key = bytes(setting.f0.ptr, setting.f0.len);
        if (std.mem.eql(u8, key[route_prefix.len..], prefix)) return bytes(setting.f1.ptr, setting.f1.len);
    }
    return null;
}

fn oom() noreturn {
    @panic("out of memory");
}

// --- the envelope --------------------------------------------------------------------------------

/// Why `payload` is not JSON that serde_json reads, or null. std.json's scanner checks the
/// grammar, UTF-8 and escapes; serde_json also refuses nesting 128 deep and numbers past f64.
fn syntaxProblem(arena: std.mem.Allocator, payload: []const u8) std.mem.Allocator.Error!?[]u8 {
    var scanner = std.json.Scanner.initCompleteInput(arena, payload);
    var diagnostics: std.json.Diagnostics = .{};
    scanner.enableDiagnostics(&diagnostics);
    const what: []const u8 = while (true) {
        const token = scanner.next() catch |e| switch (e) {
            error.OutOfMemory => return error.OutOfMemory,
            error.SyntaxError => break "syntax error",
            error.UnexpectedEndOfInput => break "EOF while parsing a value",
            error.BufferUnderrun => unreachable, // the input is complete
        };
        switch (token) {
            .end_of_document => return null,
            .object_begin, .array_begin => if (scanner.stackHeight() >= max_depth) break "recursion limit exceeded",
            .number => |text| _ = number.read(text) catch break "number out of range",
            else => {},
        }
    };
    return print("payload is not valid JSON: {s} at line {d} column {d}", .{ what, diagnostics.getLine(), diagnostics.getColumn() });
}

/// The envelope checks, in the Rust handler's order so that the first problem reported is the
/// same; after error.Invalid, `reason` (malloc'd) says what is wrong.
const Envelope = struct {
    reason: []u8 = &.{},

    fn invalid(self: *Envelope, comptime fmt: []const u8, args: anytype) error{Invalid} {
        self.reason = print(fmt, args);
        return error.Invalid;
    }

    fn field(self: *Envelope, obj: std.json.ObjectMap, name: []const u8) !std.json.Value {
        return obj.get(name) orelse self.invalid("envelope is missing `{s}`", .{name});
    }

    fn stringField(self: *Envelope, obj: std.json.ObjectMap, name: []const u8) ![]const u8 {
        const value = try self.field(obj, name);
        if (value == .string and value.string.len > 0) return value.string;
        return self.invalid("envelope field `{s}` must be a non-empty string", .{name});
    }

    /// Returns the event type.
    fn check(self: *Envelope, event: std.json.Value) ![]const u8 {
        if (event != .object) return self.invalid("envelope must be a JSON object", .{});
        const obj = event.object;
        const event_type = try self.stringField(obj, "event_type");
        _ = try self.stringField(obj, "event_id");
        _ = try self.stringField(obj, "version");
        switch (try self.field(obj, "timestamp")) {
            .number_string, .string => {},
            else => return self.invalid("envelope field `timestamp` must be a number or a string", .{}),
        }
        if (try self.field(obj, "data") != .object) return self.invalid("envelope field `data` must be an object", .{});
        const metadata = try self.field(obj, "metadata");
        if (metadata != .object) return self.invalid("envelope field `metadata` must be an object", .{});
        const producer = metadata.object.get("producer");
        if (producer == null or producer.? != .string or producer.?.string.len == 0) {
            return self.invalid("envelope field `metadata.producer` must be a non-empty string", .{});
        }
        for ([_][]const u8{ "trace_id", "correlation_id" }) |name| {
            if (metadata.object.get(name)) |value| {
                if (value != .string) return self.invalid("envelope field `metadata.{s}` must be a string", .{name});
            }
        }
        return event_type;
    }
};

/// Writes each number serde_json reads as a float as the text of that f64 (std.json writes a
/// `.number_string` as it is), so the output holds the values the Rust handler's holds.
fn normalizeNumbers(arena: std.mem.Allocator, value: *std.json.Value) std.mem.Allocator.Error!void {
    switch (value.*) {
        // syntaxProblem has refused the numbers serde_json cannot read.
        .number_string => |text| switch (number.read(text) catch unreachable) {
            .integer => {},
            .float => |f| {
                var buf: [64]u8 = undefined;
                value.* = .{ .number_string = try arena.dupe(u8, number.floatText(f, &buf)) };
            },
        },
        .array => |*items| for (items.items) |*item| try normalizeNumbers(arena, item),
        .object => |*obj| for (obj.values()) |*item| try normalizeNumbers(arena, item),
        else => {},
    }
}

/// A writer into malloc'd memory that it grows as needed: the output payload. (std.Io.Writer's
/// Allocating would do, but it can also copy from files, with fstat: a WASI import.)
const Growing = struct {
    const vtable: std.Io.Writer.VTable = .{ .drain = drain, .flush = std.Io.Writer.noopFlush, .rebase = rebase };

    fn init() std.Io.Writer {
        return .{ .buffer = &.{}, .vtable = &vtable };
    }

    fn reserve(w: *std.Io.Writer, n: usize) std.Io.Writer.Error!void {
        if (w.buffer.len - w.end >= n) return;
        const len = @max(w.end + n, w.buffer.len * 2, 256);
        w.buffer = gpa.realloc(w.buffer, len) catch return error.WriteFailed;
    }

    fn drain(w: *std.Io.Writer, data: []const []const u8, splat: usize) std.Io.Writer.Error!usize {
        const pattern = data[data.len - 1];
        var total = pattern.len * splat;
        for (data[0 .. data.len - 1]) |part| total += part.len;
        try reserve(w, total);
        for (data[0 .. data.len - 1]) |part| put(w, part);
        for (0..splat) |_| put(w, pattern);
        return total;
    }

    fn put(w: *std.Io.Writer, part: []const u8) void {
        @memcpy(w.buffer[w.end..][0..part.len], part);
        w.end += part.len;
    }

    fn rebase(w: *std.Io.Writer, preserve: usize, minimum_len: usize) std.Io.Writer.Error!void {
        _ = preserve; // nothing is ever dropped from the front
        try reserve(w, minimum_len);
    }
};

// --- the handler ---------------------------------------------------------------------------------

/// The one output of a valid envelope, or the reason (malloc'd) it is invalid.
fn enrich(arena: std.mem.Allocator, msg: *Message, out: *Output) error{OutOfMemory}!?[]u8 {
    const payload = bytes(msg.payload.ptr, msg.payload.len);
    if (try syntaxProblem(arena, payload)) |problem| return problem;
    var event = std.json.parseFromSliceLeaky(std.json.Value, arena, payload, .{
        .parse_numbers = false,
        .duplicate_field_behavior = .use_last, // as serde_json
    }) catch |e| switch (e) {
        error.OutOfMemory => return error.OutOfMemory,
        else => return print("payload is not valid JSON: {s}", .{@errorName(e)}),
    };
    var envelope = Envelope{};
    const event_type = envelope.check(event) catch return envelope.reason;

    try normalizeNumbers(arena, &event);
    try event.object.put("processed_at", .{ .integer = msg.metadata.received_ms });
    try event.object.put("processed_by", .{ .string = processed_by });
    var writer = Growing.init();
    std.json.Stringify.value(event, .{}, &writer) catch return error.OutOfMemory;
    const json = writer.buffered();

    // An empty list's pointer is not malloc's (the canonical ABI allocates nothing for it).
    const headers = &msg.headers;
    const old: ?*anyopaque = if (headers.len == 0) null else headers.ptr;
    const grown: ?[*]c.enrich_tuple2_string_string_t = @ptrCast(@alignCast(std.c.realloc(old, (headers.len + 1) * @sizeOf(c.enrich_tuple2_string_string_t))));
    headers.ptr = grown orelse return error.OutOfMemory;
    headers.ptr[headers.len] = .{ .f0 = cString("event-type"), .f1 = cString(event_type) };
    headers.len += 1;
    out.* = .{
        .payload = .{ .ptr = json.ptr, .len = json.len },
        .key = msg.key,
        .headers = headers.*,
        .route = if (routeFor(event_type)) |sink| .{ .is_some = true, .val = cString(sink) } else .{ .is_some = false },
    };
    msg.key.is_some = false;
    headers.* = .{};
    return null;
}

/// Handles one message and frees it; false with `err` set when it is refused.
fn handle(msg: *Message, ret: *Outputs, err: *HandlerError) bool {
    defer c.exports_sluice_plugin_message_handler_message_free(msg);
    var arena_state = std.heap.ArenaAllocator.init(gpa);
    defer arena_state.deinit();
    const out: *Output = @ptrCast(@alignCast(std.c.malloc(@sizeOf(Output)) orelse oom()));
    if (enrich(arena_state.allocator(), msg, out) catch oom()) |reason| {
        std.c.free(out);
        err.* = .{ .tag = c.SLUICE_PLUGIN_TYPES_HANDLER_ERROR_INVALID, .val = .{ .invalid = .{ .ptr = reason.ptr, .len = reason.len } } };
        return false;
    }
    ret.* = .{ .ptr = out, .len = 1 };
    return true;
}

export fn exports_sluice_plugin_message_handler_handle(msg: *Message, ret: *Outputs, err: *HandlerError) bool {
    return handle(msg, ret, err);
}

export fn exports_sluice_plugin_message_handler_handle_batch(
    msgs: *c.exports_sluice_plugin_message_handler_list_message_t,
    ret: *c.exports_sluice_plugin_message_handler_list_result_list_output_handler_error_t,
) void {
    const Result = c.exports_sluice_plugin_message_handler_result_list_output_handler_error_t;
    const results: [*]Result = @ptrCast(@alignCast(std.c.malloc(@max(1, msgs.len) * @sizeOf(Result)) orelse oom()));
    ret.* = .{ .ptr = results, .len = msgs.len };
    if (msgs.len == 0) return;
    for (msgs.ptr[0..msgs.len], results[0..msgs.len]) |*msg, *result| {
        result.is_err = !handle(msg, &result.val.ok, &result.val.err);
    }
    // The messages are freed one by one above; what is left is the list itself.
    std.c.free(msgs.ptr);
}
