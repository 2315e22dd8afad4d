// How the command layer talks to people and scripts: sizes, tables, JSON, progress bars.

import SLMStoreKit
#if canImport(Glibc)
import Glibc
#endif

/// Human output goes through this `print`, never the standard library's: file paths, tensor
/// names and messages come from remotes and files, and a raw ESC sequence in one would clear the
/// screen or retitle the window. JSON output (`Output.json`) keeps exact strings; JSON escapes them.
func print(_ items: Any..., separator: String = " ", terminator: String = "\n") {
    if Output.summariesSilenced { return }
    let text = items.map { "\($0)" }.joined(separator: separator)
    Swift.print(Output.terminalSafe(text, keepNewlines: true), terminator: terminator)
}

enum Output {
    /// How much a command says beside its result and its errors.
    enum Verbosity { case quiet, normal, verbose }
    /// `--quiet` / `--verbose` (any command).
    nonisolated(unsafe) static var verbosity = Verbosity.normal
    /// Set by `--quiet` for commands whose standard output is only a summary of what they did
    /// (add, push, pull...): they print nothing but JSON, warnings and errors.
    nonisolated(unsafe) static var summariesSilenced = false

    /// A remark on stderr worth a user's attention (a repair, seeds used); not with `--quiet`.
    static func note(_ s: String) {
        guard verbosity != .quiet else { return }
        fflush(stdout)
        fputs("slmstore: \(terminalSafe(s, keepNewlines: false))\n", stderr)
    }

    /// A step or a retry, on stderr with `--verbose` only.
    static func detail(_ s: String) {
        guard verbosity == .verbose else { return }
        fflush(stdout)
        fputs("slmstore: \(terminalSafe(s, keepNewlines: false))\n", stderr)
    }

    static func error(_ s: String) {
        // A progress bar may be on the line: the error starts a clean one.
        if isatty(2) != 0 { fputs("\r\u{1b}[K", stderr) }
        fputs("slmstore: error: \(terminalSafe(s, keepNewlines: false))\n", stderr)
    }

    static func warning(_ s: String) {
        fflush(stdout)
        fputs("slmstore: warning: \(terminalSafe(s, keepNewlines: false))\n", stderr)
    }

    /// Control characters (C0 but tab, DEL, C1) written as escapes, the way git quotes paths:
    /// ESC becomes `\x1b`, CR `\r`; newlines too unless `keepNewlines` (a block of lines).
    static func terminalSafe(_ s: String, keepNewlines: Bool) -> String {
        func isControl(_ v: UInt32) -> Bool { v < 0x20 || (v >= 0x7f && v <= 0x9f) }
        guard s.unicodeScalars.contains(where: { isControl($0.value) && $0 != "\t" && !(keepNewlines && $0 == "\n") }) else { return s }
        var out = String.UnicodeScalarView()
        for u in s.unicodeScalars {
            if !isControl(u.value) || u == "\t" || (keepNewlines && u == "\n") { out.append(u); continue }
            let escaped: String
            switch u {
            case "\n": escaped = "\\n"
            case "\r": escaped = "\\r"
            default: escaped = "\\x" + String(u.value, radix: 16).leftPadded(to: 2)
            }
            out.append(contentsOf: escaped.unicodeScalars)
        }
        return String(out)
    }

    static func json(_ v: JSONValue) { Swift.print(v.prettyString()) }

    /// "1 chunk", "2 chunks": a count with its noun in the right number.
    static func count<N: BinaryInteger>(_ n: N, _ noun: String) -> String { "\(n) \(n == 1 ? noun : noun + "s")" }

    static func bytes(_ n: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(n)
        var u = 0
        while v >= 1024 && u < units.count - 1 { v /= 1024; u += 1 }
        return u == 0 ? "\(n) B" : fixed(v, 1) + " " + units[u]
    }

    static func fixed(_ v: Double, _ digits: Int) -> String {
        guard v.isFinite else { return "-" }
        var s = String(Int64((v * pow10(digits)).rounded()))
        if digits == 0 { return s }
        let negative = s.hasPrefix("-")
        if negative { s.removeFirst() }
        while s.count <= digits { s = "0" + s }
        s.insert(".", at: s.index(s.endIndex, offsetBy: -digits))
        return (negative ? "-" : "") + s
    }

    private static func pow10(_ d: Int) -> Double { (0..<d).reduce(1.0) { a, _ in a * 10 } }

    static func rate(_ bytes: UInt64, _ seconds: Double) -> String {
        seconds > 0 ? fixed(Double(bytes) / seconds / 1e6, 1) + " MB/s" : "-"
    }

    /// Left-aligned columns.
    static func table(_ rows: [[String]]) -> String {
        guard let width = rows.map(\.count).max() else { return "" }
        var widths = [Int](repeating: 0, count: width)
        for r in rows { for (i, c) in r.enumerated() { widths[i] = max(widths[i], c.count) } }
        return rows.map { r in
            r.enumerated().map { i, c in i == r.count - 1 ? c : c + String(repeating: " ", count: widths[i] - c.count) }
                .joined(separator: "  ")
        }.joined(separator: "\n")
    }
}

/// A one-line progress bar on stderr, drawn only when stderr is a terminal.
final class ProgressBar: @unchecked Sendable {
    /// `--no-progress` (any command): no bar even on a terminal.
    nonisolated(unsafe) static var suppressed = false
    private let label: String
    private let enabled: Bool
    private var lastDraw = 0.0
    private let started = Timestamp.monotonicSeconds()

    init(_ label: String) {
        self.label = label
        enabled = isatty(2) != 0 && !Self.suppressed
    }

    func update(_ done: UInt64, _ total: UInt64) {
        guard enabled else { return }
        let now = Timestamp.monotonicSeconds()
        guard now - lastDraw >= 0.1 || done == total else { return }
        lastDraw = now
        let fraction = total > 0 ? min(1, Double(done) / Double(total)) : 1
        let width = 30
        let filled = Int(fraction * Double(width))
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
        let elapsed = now - started
        // The time left at the rate so far, once there is a rate to go by.
        var eta = ""
        if done > 0, done < total, elapsed > 0.5 {
            let left = Double(total - done) / (Double(done) / elapsed)
            eta = left < 60 ? " ETA \(Int(left.rounded(.up)))s" : " ETA \(Int(left / 60))m\(Int(left.truncatingRemainder(dividingBy: 60)))s"
        }
        let line = "\r\(label) [\(bar)] \(Output.fixed(fraction * 100, 0))% \(Output.bytes(done))/\(Output.bytes(total)) \(Output.rate(done, elapsed))\(eta)"
        fputs(line + "\u{1b}[K", stderr)
    }

    func finish() {
        guard enabled else { return }
        fputs("\r\u{1b}[K", stderr)
    }

    var callback: @Sendable (UInt64, UInt64) -> Void { { [self] in self.update($0, $1) } }
}

private extension String {
    func leftPadded(to n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}
