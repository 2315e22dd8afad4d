// Fault injection for the crash tests: when SLMSTORE_CRASH_AT names a point, the process
// SIGKILLs itself there, so tests can stop a real process between two specific writes.

#if canImport(Glibc)
import Glibc
#endif

public enum CrashPoint {
    private static let target: String? = getenv("SLMSTORE_CRASH_AT").map { String(cString: $0) }

    @inline(__always)
    public static func hit(_ name: String) {
        guard let target, target == name else { return }
        kill(getpid(), SIGKILL)
        pause()
    }
}
