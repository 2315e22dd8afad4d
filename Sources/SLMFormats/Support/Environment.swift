// Facts about the running process that get recorded in objects: time, user@host, tool version.

#if canImport(Glibc)
import Glibc
#endif

/// This build's release, as recorded in the objects it writes.
public enum SLMStoreVersion {
    /// The release number.
    public static let current = "0.1.0"
    /// What a version object records as the tool that wrote it.
    public static var tool: String { "slmstore \(current)" }
}

/// Times as objects and messages record them.
public enum Timestamp {
    /// RFC 3339 in UTC with second precision, e.g. 2026-11-29T04:05:50Z.
    public static func now() -> String { format(time(nil)) }

    /// `t` in RFC 3339 UTC with second precision.
    public static func format(_ t: time_t) -> String {
        let (date, clock) = fields(t)
        return "\(date[0])-\(date[1])-\(date[2])T\(clock[0]):\(clock[1]):\(clock[2])Z"
    }

    /// The Unix time of an RFC 3339 UTC time in the form `format` writes; nil for anything else.
    public static func parse(_ s: String) -> time_t? {
        let u = Array(s.utf8)
        guard u.count == 20, u[4] == 0x2d, u[7] == 0x2d, u[10] == 0x54, u[13] == 0x3a, u[16] == 0x3a, u[19] == 0x5a else { return nil }
        func num(_ r: Range<Int>) -> Int32? {
            guard u[r].allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
            return Int32(String(decoding: u[r], as: UTF8.self))
        }
        guard let y = num(0..<4), let mo = num(5..<7), let d = num(8..<10), let h = num(11..<13), let mi = num(14..<16), let se = num(17..<19),
              (1...12).contains(mo), (1...31).contains(d), h < 24, mi < 60, se < 61 else { return nil }
        var t = tm()
        (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec) = (y - 1900, mo - 1, d, h, mi, se)
        return timegm(&t)
    }

    /// SigV4's basic ISO 8601 form in UTC, e.g. 20261129T040550Z.
    public static func compact(_ t: time_t) -> String {
        let (date, clock) = fields(t)
        return date.joined() + "T" + clock.joined() + "Z"
    }

    /// Zero-padded year, month, day and hour, minute, second in UTC. Formatting here rather
    /// than with DateFormatter keeps ICU's tables (megabytes of pages) out of a daemon's memory.
    private static func fields(_ t: time_t) -> ([String], [String]) {
        var tv = t
        var tmv = tm()
        gmtime_r(&tv, &tmv)
        func pad(_ v: Int32, _ w: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, w - s.count)) + s
        }
        return ([pad(tmv.tm_year + 1900, 4), pad(tmv.tm_mon + 1, 2), pad(tmv.tm_mday, 2)],
                [pad(tmv.tm_hour, 2), pad(tmv.tm_min, 2), pad(tmv.tm_sec, 2)])
    }

    /// An HTTP date in the IMF-fixdate form servers must send ("Sun, 06 Nov 1994 08:49:37 GMT");
    /// nil for anything else, including the obsolete forms.
    public static func parseHTTPDate(_ s: String) -> time_t? {
        let parts = s.split(separator: " ")
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        guard parts.count == 6, parts[0].count == 4, parts[0].hasSuffix(","), parts[5] == "GMT",
              parts[1].count == 2, let day = Int32(parts[1]), (1...31).contains(day),
              let month = months.firstIndex(of: String(parts[2])),
              parts[3].count == 4, let year = Int32(parts[3]), year >= 1970 else { return nil }
        let clock = parts[4].split(separator: ":", omittingEmptySubsequences: false)
        guard parts[4].count == 8, clock.count == 3, let h = Int32(clock[0]), let m = Int32(clock[1]), let sec = Int32(clock[2]),
              (0...23).contains(h), (0...59).contains(m), (0...60).contains(sec) else { return nil }
        var tmv = tm()
        tmv.tm_year = year - 1900
        tmv.tm_mon = Int32(month)
        tmv.tm_mday = day
        tmv.tm_hour = h
        tmv.tm_min = m
        tmv.tm_sec = sec
        return timegm(&tmv)
    }

    /// Seconds on a clock that never goes back, for durations.
    public static func monotonicSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}

/// Who is running this process, as provenance records it.
public enum Identity {
    /// user@host of the current process.
    public static func current() -> String {
        var user = "unknown"
        if let pw = getpwuid(geteuid()), let name = pw.pointee.pw_name {
            user = String(decoding: UnsafeRawBufferPointer(start: name, count: strlen(name)).bindMemory(to: UInt8.self), as: UTF8.self)
        } else if let env = getenv("USER") {
            user = String(decoding: UnsafeRawBufferPointer(start: env, count: strlen(env)).bindMemory(to: UInt8.self), as: UTF8.self)
        }
        var host = [UInt8](repeating: 0, count: 256)
        let ok = host.withUnsafeMutableBufferPointer { p in
            p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: 256) { gethostname($0, 255) == 0 }
        }
        let hostname = ok ? String(decoding: host.prefix(while: { $0 != 0 }), as: UTF8.self) : "localhost"
        return "\(user)@\(hostname)"
    }
}
