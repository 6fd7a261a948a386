//! {{name}}: a Sluice handler in Zig.
//!
//! Adds `handled_by` (and the `tag` setting, when the pipeline gives one) to each JSON object it
//! receives; anything else is refused as `invalid`, which sends it to the dead-letter sink.
//!
//! The ABI is the C bindings `sluice plugin bindings c` writes into build/ (see build.sh), used
//! through @cImport. Memory: the arguments of an export are yours to free; everything in a return
//! value must come from malloc, since the generated post-return code frees it.
const std = @import("std");
const c = @cImport(@cInclude("handler.h"));

const Message = c.exports_sluice_plugin_message_handler_message_t;
const Output = c.exports_sluice_plugin_message_handler_output_t;
const Outputs = c.exports_sluice_plugin_message_handler_list_output_t;
const HandlerError = c.exports_sluice_plugin_message_handler_handler_error_t;
const Header = c.handler_tuple2_string_string_t;

/// Calls malloc and free directly, so what it returns can go into a return value.
const gpa = std.heap.raw_c_allocator;

/// The `tag` setting from the pipeline's `config`, set once by `init`.
var tag: ?[]const u8 = null;

/// A panic is logged as "panic: <message>" (the host puts that line into the dead-letter reason),
/// then traps. Zig's default handler would print to stderr, a WASI import handlers do not get.
pub const panic = std.debug.FullPanic(logAndTrap);

fn logAndTrap(msg: []const u8, _: ?usize) noreturn {
    var line: [1024]u8 = undefined;
    const entry = std.fmt.bufPrint(&line, "panic: {s}", .{msg}) catch "panic: (message too long)";
    var s = c.handler_string_t{ .ptr = @constCast(entry.ptr), .len = entry.len };
    c.sluice_plugin_log_log(c.SLUICE_PLUGIN_LOG_LEVEL_ERROR, &s);
    @trap();
}

fn slice(ptr: [*c]u8, len: usize) []u8 {
    return if (len == 0) &.{} else ptr[0..len];
}

/// `parts` joined, in malloc'd memory.
fn text(parts: []const []const u8) c.handler_string_t {
    const joined = std.mem.concat(gpa, u8, parts) catch @panic("out of memory");
    return .{ .ptr = joined.ptr, .len = joined.len };
}

export fn exports_sluice_plugin_lifecycle_init(config: *c.handler_list_tuple2_string_string_t, err: *c.handler_string_t) bool {
    defer c.handler_list_tuple2_string_string_free(config);
    const settings: []Header = if (config.len == 0) &.{} else config.ptr[0..config.len];
    for (settings) |setting| {
        const key = slice(setting.f0.ptr, setting.f0.len);
        if (!std.mem.eql(u8, key, "tag")) {
            err.* = text(&.{ "unknown setting `", key, "` (expected `tag`)" });
            return false;
        }
        tag = gpa.dupe(u8, slice(setting.f1.ptr, setting.f1.len)) catch @panic("out of memory");
    }
    return true;
}

/// `value` as JSON in malloc'd memory. (Not std.json.Stringify.valueAlloc: its growing writer
/// can also copy from files, with fstat, which would make the component import WASI.)
fn stringify(value: std.json.Value, size_hint: usize) []u8 {
    var size = size_hint;
    while (true) : (size *= 2) {
        const buf = gpa.alloc(u8, size) catch @panic("out of memory");
        var w = std.Io.Writer.fixed(buf);
        if (std.json.Stringify.value(value, .{}, &w)) |_| return buf[0..w.end] else |_| gpa.free(buf);
    }
}

fn tagged(arena: std.mem.Allocator, payload: []const u8, err: *HandlerError) ?[]u8 {
    const value = std.json.parseFromSliceLeaky(std.json.Value, arena, payload, .{
        .parse_numbers = false, // numbers are written back as they came
        .duplicate_field_behavior = .use_last,
    }) catch |e| switch (e) {
        error.OutOfMemory => @panic("out of memory"),
        else => {
            err.* = .{ .tag = c.SLUICE_PLUGIN_TYPES_HANDLER_ERROR_INVALID, .val = .{ .invalid = text(&.{ "payload is not a JSON object: ", @errorName(e) }) } };
            return null;
        },
    };
    if (value != .object) {
        err.* = .{ .tag = c.SLUICE_PLUGIN_TYPES_HANDLER_ERROR_INVALID, .val = .{ .invalid = text(&.{"payload is not a JSON object"}) } };
        return null;
    }
    var event = value.object;
    event.put("handled_by", .{ .string = "{{name}}" }) catch @panic("out of memory");
    if (tag) |t| event.put("tag", .{ .string = t }) catch @panic("out of memory");
    return stringify(.{ .object = event }, payload.len + 64);
}

/// Handles one message and frees it; false with `err` set when it is refused.
fn handle(msg: *Message, ret: *Outputs, err: *HandlerError) bool {
    defer c.exports_sluice_plugin_message_handler_message_free(msg);
    var arena = std.heap.ArenaAllocator.init(gpa);
    defer arena.deinit();
    const json = tagged(arena.allocator(), slice(msg.payload.ptr, msg.payload.len), err) orelse return false;

    // One more header. An empty list's pointer is not malloc's, so it is not realloc'd.
    const h = &msg.headers;
    const old: ?*anyopaque = if (h.len == 0) null else h.ptr;
    const headers: [*]Header = @ptrCast(@alignCast(std.c.realloc(old, (h.len + 1) * @sizeOf(Header)) orelse @panic("out of memory")));
    headers[h.len] = .{ .f0 = text(&.{"x-handled-by"}), .f1 = text(&.{"{{name}}"}) };
    const out: *Output = @ptrCast(@alignCast(std.c.malloc(@sizeOf(Output)) orelse @panic("out of memory")));
    // The key and the headers move to the output.
    out.* = .{ .payload = .{ .ptr = json.ptr, .len = json.len }, .key = msg.key, .headers = .{ .ptr = headers, .len = h.len + 1 } };
    msg.key.is_some = false;
    h.* = .{};
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
    const results = gpa.alloc(Result, @max(1, msgs.len)) catch @panic("out of memory");
    ret.* = .{ .ptr = results.ptr, .len = msgs.len };
    if (msgs.len == 0) return;
    for (msgs.ptr[0..msgs.len], results[0..msgs.len]) |*msg, *result| {
        result.is_err = !handle(msg, &result.val.ok, &result.val.err);
    }
    // handle() freed each message; the list itself is left.
    std.c.free(msgs.ptr);
}
