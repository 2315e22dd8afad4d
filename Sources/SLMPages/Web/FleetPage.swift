// The fleet as a static page (`slmstore fleet REMOTE --web` writes web/fleet.html): per model and
// version who runs, goes for, rejected or failed it (enrolled devices only), the active rollouts
// with their failure rates, silent devices and the report files not counted, with why. Every name on it comes from device reports,
// which anyone who can write reports/ controls, so all of it is escaped.

import SLMFormats
import SLMLocalStore
import SLMRemote

extension SiteLayout {
    /// web/fleet.html.
    public static let fleet = "web/fleet.html"
}

extension RegistrySite {
    /// The fleet page for `view`, stamped `generated`; every name from a report escaped.
    public static func fleetPage(_ view: FleetView, generated: String) -> String {
        var body = "<h1>Fleet</h1><p>\(view.devices) of \(view.enrolled) enrolled devices reporting. Generated \(HTML.escape(generated)) by slmstore.</p>"
        if !view.rollouts.isEmpty {
            body += "<h2>Rollouts</h2><table><tr><th>rollout</th><th>version</th><th>share</th><th>running</th><th>rejected or failed</th><th>failure rate</th></tr>"
            for r in view.rollouts {
                let rate = (r.counts.failureRate * 1000).rounded() / 10
                body += "<tr><td>\(HTML.escape("\(r.model)@\(r.stage)"))</td><td>\(HTML.escape(r.version))</td><td>\(RolloutRecord.format(r.percent))%</td>"
                body += "<td>\(r.counts.running)</td><td>\(r.counts.rejected + r.counts.failed)</td>"
                body += "<td class=\"\(rate > 0 ? "refused" : "ok")\">\(rate)%</td></tr>"
            }
            body += "</table>"
        }
        body += "<h2>Versions</h2><table><tr><th>model</th><th>version</th><th>running</th><th>pending</th><th>rejected</th><th>failed</th><th>silent</th><th>downloaded</th></tr>"
        for (model, versions) in view.models.sorted(by: { $0.key < $1.key }) {
            for (v, c) in versions.sorted(by: { a, b in
                guard let x = SemVer(parsing: a.key), let y = SemVer(parsing: b.key) else { return a.key < b.key }
                return x < y
            }) {
                body += "<tr><td><a href=\"models/\(HTML.href(model))/index.html\">\(HTML.escape(model))</a></td><td>\(HTML.escape(v))</td>"
                body += "<td>\(c.running)</td><td>\(c.pending)</td><td>\(c.rejected)</td><td>\(c.failed)</td><td>\(c.silent)</td><td>\(HTML.bytes(c.bytesFetched))</td></tr>"
            }
        }
        body += "</table>"
        if !view.silentDevices.isEmpty {
            body += "<h2>Silent devices</h2><ul>" + view.silentDevices.sorted().map { "<li class=\"mono\">\(HTML.escape($0))</li>" }.joined() + "</ul>"
        }
        let listed = view.refused.prefix(200)
        if !listed.isEmpty {
            body += "<h2>Reports not counted</h2><table><tr><th>file</th><th>device</th><th>why</th></tr>"
            for r in listed {
                body += "<tr><td class=\"mono\">\(HTML.escape(r.file))</td><td class=\"mono\">\(HTML.escape(r.device ?? ""))</td><td>\(HTML.escape(r.reason.rawValue))</td></tr>"
            }
            body += "</table>"
            if view.refused.count > listed.count { body += "<p>… and \(view.refused.count - listed.count) more, not listed here.</p>" }
        }
        if view.skipped > 0 { body += "<p>\(view.skipped) more files under reports/ were not read.</p>" }
        return HTML.page(title: "slmstore fleet", root: "", body: body)
    }
}
