// Facts about the running process that get recorded in objects: time, user@host, tool version.

#if canImport(Glibc)
import Glibc
#endif

public enum SLMStoreVersion {
    public static let current = "0.1.0"
    public static var tool: String { "slmstore \(current)" }
}

public enum Timestamp {
    /// RFC 3339 in UTC with second precision, e.g. 2026-11-29T04:05:50Z.
    public static func now() -> String { format(time(nil)) }

    public static func format(_ t: time_t) -> String {
        var tv = t
        var tmv = tm()
        gmtime_r(&tv, &tmv)
        func pad(_ v: Int32, _ w: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, w - s.count)) + s
        }
        return "\(pad(tmv.tm_year + 1900, 4))-\(pad(tmv.tm_mon + 1, 2))-\(pad(tmv.tm_mday, 2))T\(pad(tmv.tm_hour, 2)):\(pad(tmv.tm_min, 2)):\(pad(tmv.tm_sec, 2))Z"
    }

    public static func monotonicSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}

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
