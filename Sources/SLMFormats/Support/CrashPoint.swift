// Fault injection for the crash tests: once a point is armed (the command layer arms the one
// SLMSTORE_CRASH_AT names), the process SIGKILLs itself there, so tests can stop a real process
// between two specific writes. Unarmed, a point costs one lock-free load.

import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Named points at which a test can have the process kill itself.
public enum CrashPoint {
    private static let armed = Atomic<Bool>(false)
    private static let target = Mutex<String?>(nil)

    /// Arms `name` (nil disarms). Call before the work starts.
    public static func arm(_ name: String?) {
        target.withLock { $0 = name }
        armed.store(name != nil, ordering: .releasing)
    }

    @inline(__always)
    /// SIGKILLs the process if `name` is the armed point; otherwise returns at once.
    public static func hit(_ name: String) {
        guard armed.load(ordering: .acquiring), target.withLock({ $0 == name }) else { return }
        kill(getpid(), SIGKILL)
        pause()
    }
}
