// The hours a device may download and switch versions in (`sync --window 01:00-05:00`), in the
// device's local time. A round starts only inside the window; a download already running when
// it closes finishes, and one cut off resumes in the next window (pulls resume).

import SLMFormats
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A daily window in local time, HH:MM-HH:MM, when a device may download and switch versions.
public struct DownloadWindow: Sendable, Equatable, CustomStringConvertible {
    /// Minutes after midnight; `end` before `start` wraps past midnight (22:00-04:00).
    public var start: Int
    /// Minutes after midnight the window closes.
    public var end: Int

    /// Parses "HH:MM-HH:MM" (24-hour clock; start and end differ).
    public init(parsing text: String) throws {
        func minutes(_ s: Substring) -> Int? {
            let parts = s.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2, parts.allSatisfy({ $0.count == 2 && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }),
                  let h = Int(parts[0]), let m = Int(parts[1]), h < 24, m < 60 else { return nil }
            return h * 60 + m
        }
        let ends = text.split(separator: "-", omittingEmptySubsequences: false)
        guard ends.count == 2, let s = minutes(ends[0]), let e = minutes(ends[1]), s != e else {
            throw SLMError.invalidSetting(.downloadWindow, problem: "\"\(text)\" must be HH:MM-HH:MM in 24-hour local time, start and end different (e.g. 01:00-05:00)")
        }
        (start, end) = (s, e)
    }

    /// HH:MM-HH:MM.
    public var description: String {
        func hhmm(_ m: Int) -> String { (m / 60 < 10 ? "0" : "") + "\(m / 60):" + (m % 60 < 10 ? "0" : "") + "\(m % 60)" }
        return "\(hhmm(start))-\(hhmm(end))"
    }

    /// Whether `minute` (after local midnight) lies in the window: from start, up to but not
    /// including end.
    public func contains(minute: Int) -> Bool {
        start < end ? (minute >= start && minute < end) : (minute >= start || minute < end)
    }

    /// Whether the local time at `t` lies in the window.
    public func contains(_ t: time_t) -> Bool {
        var t = t
        var parts = tm()
        guard localtime_r(&t, &parts) != nil else { return true }
        return contains(minute: Int(parts.tm_hour) * 60 + Int(parts.tm_min))
    }
}
