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
        var s = statvfs()
        guard statvfs(nearestExisting(path), &s) == 0 else { return nil }
        return (UInt64(s.f_bavail) * UInt64(s.f_frsize), UInt64(s.f_blocks) * UInt64(s.f_frsize))
    }

    /// The filesystem a path is (or would be) on: its nearest existing ancestor's device.
    static func device(_ path: String) -> UInt64? {
        var st = stat()
        guard stat(nearestExisting(path), &st) == 0 else { return nil }
        return UInt64(st.st_dev)
    }

    /// `path`, or its nearest existing ancestor: a directory a write will create is on the
    /// filesystem of the one it is created in.
    static func nearestExisting(_ path: String) -> String {
        var probe = path
        while !FileSystem.exists(probe), probe.contains("/"), probe != "/" {
            probe = String(probe[..<probe.lastIndex(of: "/")!])
            if probe.isEmpty { probe = "/" }
        }
        return probe.isEmpty ? "." : probe
    }

    /// One check for several writes (what a pull downloads into the store and what it installs
    /// under `--to`): writes that land on one filesystem are added up, and each filesystem must
    /// keep its reserve. The message names each place and amount in human units.
    public static func require(_ writes: [(bytes: UInt64, path: String, what: String)], for operation: String) throws {
        var groups: [(device: UInt64?, writes: [(bytes: UInt64, path: String, what: String)])] = []
        for w in writes where w.bytes > 0 {
            let d = device(w.path)
            if let i = groups.firstIndex(where: { $0.device != nil && $0.device == d }) { groups[i].writes.append(w) } else { groups.append((d, [w])) }
        }
        for g in groups {
            let path = g.writes[0].path
            guard let (available, _) = stats(path) else { continue }
            let needed = g.writes.reduce(UInt64(0)) { $0 &+ $1.bytes }
            let reserve = reserve(at: path)
            guard needed > available || available - needed < reserve else { continue }
            let parts = g.writes.map { "\(human($0.bytes)) \($0.what) in \($0.path)" }.joined(separator: " and ")
            let together = g.writes.count > 1 ? ", on one filesystem, \(human(needed)) together" : ""
            throw SLMError.failed("not enough disk space for \(operation): needs \(parts)\(together); \(human(available)) free, and \(human(reserve)) must stay free; nothing was downloaded")
        }
    }

    /// A byte count as people read it: "23.3 MiB".
    public static func human(_ bytes: UInt64) -> String {
        let units = ["bytes", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(bytes)
        var unit = 0
        while value >= 1024 && unit < units.count - 1 { value /= 1024; unit += 1 }
        return unit == 0 ? "\(bytes) bytes" : "\((value * 10).rounded() / 10) \(units[unit])"
    }

    /// Refuses a write of `bytes` under `path` that would leave less than the reserve free.
    public static func require(_ bytes: UInt64, at path: String, for what: String) throws {
        guard let (available, _) = stats(path) else { return }
        let reserve = reserve(at: path)
        if bytes > available || available - bytes < reserve {
            throw SLMError.failed("not enough disk space in \(path) for \(what): needs \(human(bytes)), \(human(available)) free, and \(human(reserve)) must stay free; nothing was changed")
        }
    }
}
