// Free space, checked before a pull downloads and before a version is installed: a remote can
// describe a tree far larger than what it sends (a few chunks referenced many times), and a
// device that fills its disk takes the model it runs down with it.

#if canImport(Glibc)
import Glibc
#endif

/// Free-space checks before large writes.
public enum DiskSpace {
    /// What must stay free after a write: 5% of the filesystem, at most 256 MiB.
    public static func reserve(at path: String) -> UInt64 {
        guard let (_, total) = stats(path) else { return 0 }
        return min(256 << 20, total / 20)
    }

    /// Bytes an unprivileged writer may still use, and the filesystem's size.
    static func stats(_ path: String) -> (available: UInt64, total: UInt64)? {
        var probe = path
        // The directory may not exist yet: ask its nearest existing ancestor.
        while !FileSystem.exists(probe), probe.contains("/"), probe != "/" {
            probe = String(probe[..<probe.lastIndex(of: "/")!])
            if probe.isEmpty { probe = "/" }
        }
        var s = statvfs()
        guard statvfs(probe.isEmpty ? "." : probe, &s) == 0 else { return nil }
        return (UInt64(s.f_bavail) * UInt64(s.f_frsize), UInt64(s.f_blocks) * UInt64(s.f_frsize))
    }

    /// Refuses a write of `bytes` under `path` that would leave less than the reserve free.
    public static func require(_ bytes: UInt64, at path: String, for what: String) throws {
        guard let (available, _) = stats(path) else { return }
        let reserve = reserve(at: path)
        if bytes > available || available - bytes < reserve {
            throw SLMError.failed("not enough disk space in \(path) for \(what): needs \(bytes) bytes, \(available) free, and \(reserve) must stay free; nothing was changed")
        }
    }
}
