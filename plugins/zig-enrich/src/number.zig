//! JSON numbers as the Rust handler's serde_json 1.0 reads them (without its `float_roundtrip`
//! feature), so that this handler refuses the same numbers and writes the same values.
//!
//! An integer that fits an i64 or a u64 stays an integer. Anything else is an f64 that serde_json
//! computes as significand × 10^exponent with its own f64 arithmetic, which is not always the
//! correctly rounded value `std.fmt.parseFloat` gives; a result past f64's range is an error.
const std = @import("std");

pub const Number = union(enum) {
    /// Written back as it was.
    integer,
    float: f64,
};

pub const Error = error{NumberOutOfRange};

/// serde_json's powers of ten, 1e0..=1e308 (comptime literals are correctly rounded).
const pow10: [309]f64 = blk: {
    @setEvalBranchQuota(100_000);
    var table: [309]f64 = undefined;
    for (&table, 0..) |*p, i| p.* = std.fmt.parseFloat(f64, std.fmt.comptimePrint("1e{d}", .{i})) catch unreachable;
    break :blk table;
};

fn overflows(sig: u64, digit: u64) bool {
    return sig >= std.math.maxInt(u64) / 10 and (sig > std.math.maxInt(u64) / 10 or digit > std.math.maxInt(u64) % 10);
}

/// `text` is a number by JSON's grammar (std.json's scanner has checked it).
pub fn read(text: []const u8) Error!Number {
    var i: usize = 0;
    const positive = text[0] != '-';
    if (!positive) i += 1;
    var sig: u64 = 0;
    var exponent: i64 = 0;
    var is_float = false;
    // Integer digits past what a u64 holds only scale the significand.
    var full = false;
    while (i < text.len and std.ascii.isDigit(text[i])) : (i += 1) {
        const digit: u64 = text[i] - '0';
        if (full or overflows(sig, digit)) {
            full = true;
            is_float = true;
            exponent += 1;
        } else {
            sig = sig * 10 + digit;
        }
    }
    if (i < text.len and text[i] == '.') {
        is_float = true;
        i += 1;
        // serde_json starts afresh here: a digit that fits is taken even after integer digits
        // were dropped; the first one that does not ends the significand.
        full = false;
        while (i < text.len and std.ascii.isDigit(text[i])) : (i += 1) {
            const digit: u64 = text[i] - '0';
            if (full or overflows(sig, digit)) {
                full = true;
            } else {
                sig = sig * 10 + digit;
                exponent -= 1;
            }
        }
    }
    if (i < text.len) {
        // An exponent: [eE][+-]?digits
        is_float = true;
        i += 1;
        var exp_positive = true;
        if (text[i] == '+' or text[i] == '-') {
            exp_positive = text[i] == '+';
            i += 1;
        }
        var exp: i32 = 0;
        while (i < text.len) : (i += 1) {
            const digit: i32 = text[i] - '0';
            if (exp >= std.math.maxInt(i32) / 10 and (exp > std.math.maxInt(i32) / 10 or digit > std.math.maxInt(i32) % 10)) {
                // Past i32: serde_json refuses it, or makes it zero.
                if (sig != 0 and exp_positive) return error.NumberOutOfRange;
                return .{ .float = if (positive) 0.0 else -0.0 };
            }
            exp = exp * 10 + digit;
        }
        exponent += if (exp_positive) exp else -@as(i64, exp);
    }
    if (!is_float) {
        // Negative integers below i64's range, and -0, are floats to serde_json.
        if (positive or (sig != 0 and sig <= 1 << 63)) return .integer;
        return .{ .float = -@as(f64, @floatFromInt(sig)) };
    }
    return .{ .float = try fromParts(positive, sig, std.math.clamp(exponent, std.math.minInt(i32), std.math.maxInt(i32))) };
}

/// serde_json's `f64_from_parts`.
fn fromParts(positive: bool, sig: u64, exponent_in: i64) Error!f64 {
    var exponent = exponent_in;
    var f: f64 = @floatFromInt(sig);
    while (true) {
        if (@abs(exponent) <= 308) {
            const abs: usize = @intCast(@abs(exponent));
            if (exponent >= 0) {
                f *= pow10[abs];
                if (std.math.isInf(f)) return error.NumberOutOfRange;
            } else {
                f /= pow10[abs];
            }
            break;
        }
        if (f == 0) break;
        if (exponent >= 0) return error.NumberOutOfRange;
        f /= 1e308;
        exponent += 308;
    }
    return if (positive) f else -f;
}

/// `f` as a JSON number that reads back as the same f64 and, like serde_json's `1.0`, stays a
/// float: plain digits for 1e-5 <= |f| < 1e16, else with an exponent.
pub fn floatText(f: f64, buf: *[64]u8) []const u8 {
    const abs = @abs(f);
    const plain = abs == 0 or (abs >= 1e-5 and abs < 1e16);
    const text = (if (plain) std.fmt.bufPrint(buf, "{d}", .{f}) else std.fmt.bufPrint(buf, "{e}", .{f})) catch unreachable;
    if (std.mem.indexOfAny(u8, text, ".e") != null) return text;
    buf[text.len..][0..2].* = ".0".*;
    return buf[0 .. text.len + 2];
}

test "serde_json's numbers" {
    try std.testing.expectEqual(Number.integer, try read("18446744073709551615"));
    try std.testing.expectEqual(Number.integer, try read("-9223372036854775808"));
    try std.testing.expectEqual(Number{ .float = -9223372036854775809.0 }, try read("-9223372036854775809"));
    try std.testing.expectEqual(Number{ .float = -0.0 }, try read("-0"));
    try std.testing.expectEqual(Number{ .float = 100.0 }, try read("1E2"));
    try std.testing.expectEqual(Number{ .float = 12.5 }, try read("12.50"));
    try std.testing.expectEqual(Number{ .float = 0.0 }, try read("1e-400"));
    try std.testing.expectError(error.NumberOutOfRange, read("1e400"));
    try std.testing.expectError(error.NumberOutOfRange, read("1e99999999999"));
    try std.testing.expectEqual(Number{ .float = 1.2345678901234568e29 }, try read("123456789012345678901234567890"));
}

test "floats stay floats" {
    var buf: [64]u8 = undefined;
    try std.testing.expectEqualStrings("1.0", floatText(1.0, &buf));
    try std.testing.expectEqualStrings("-0.0", floatText(-0.0, &buf));
    try std.testing.expectEqualStrings("12.5", floatText(12.5, &buf));
    try std.testing.expectEqualStrings("1e29", floatText(1e29, &buf));
    try std.testing.expectEqualStrings("1e-7", floatText(1e-7, &buf));
    try std.testing.expectEqualStrings("-1.7976931348623157e308", floatText(-std.math.floatMax(f64), &buf));
}
