// The few HTML pieces the registry pages are built from: escaping (every value from a card, a
// name or a record goes through it), the page shell with its inline stylesheet, and inline SVG
// bars. No external fonts, scripts or stylesheets: the pages work from file://, nginx or a bucket.

import SLMFormats
import SLMLocalStore
import SLMRemote
import Foundation

enum HTML {
    /// Text and attribute values: nothing a card says can become markup.
    static func escape(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for c in s.unicodeScalars {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            // Control characters (a raw ESC in a device id) are shown as code points, never
            // passed to the page: HTML forbids them and a terminal viewing the file obeys them.
            case _ where (c.value < 0x20 && c != "\n" && c != "\t") || (c.value >= 0x7f && c.value <= 0x9f):
                out += "U+" + String(c.value, radix: 16, uppercase: true).leftPadded(to: 4)
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    /// A path segment for an href: names and versions are restricted, but encode anyway.
    static func href(_ s: String) -> String {
        var out = ""
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"), UInt8(ascii: "/"):
                out.append(Character(UnicodeScalar(b)))
            default:
                out += String(format: "%%%02X", b)
            }
        }
        return out
    }

    static func bytes(_ n: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(n), i = 0
        while v >= 1024 && i < units.count - 1 { v /= 1024; i += 1 }
        return i == 0 ? "\(n) B" : String(format: "%.1f %@", v, units[i])
    }

    static let style = """
    body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1f2328;background:#f6f8fa}
    header{background:#24292f;color:#fff;padding:12px 24px}header a{color:#fff;text-decoration:none;font-weight:600}
    main{max-width:1100px;margin:0 auto;padding:16px 24px}h1{font-size:24px;margin:8px 0}h2{font-size:18px;margin:24px 0 8px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
    table{border-collapse:collapse;width:100%;background:#fff;margin:8px 0}th,td{border:1px solid #d0d7de;padding:5px 8px;text-align:left;vertical-align:top;word-break:break-word}td.nowrap{white-space:nowrap;word-break:normal}td.reason{min-width:16em}summary{cursor:pointer;margin:6px 0}
    th{background:#f0f3f6;font-weight:600}code,.mono{font:13px ui-monospace,SFMono-Regular,Menlo,monospace}
    .stage{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;margin-right:4px;background:#ddf4ff;color:#0969da}
    .stage.production{background:#dafbe1;color:#1a7f37}.stage.staging{background:#fff8c5;color:#9a6700}.stage.archived{background:#eaeef2;color:#57606a}
    .muted{color:#57606a}.card{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:8px 16px;margin:8px 0}
    dl{display:grid;grid-template-columns:max-content auto;gap:2px 16px;margin:4px 0}dt{font-weight:600}dd{margin:0;white-space:pre-wrap;word-break:break-word}
    .ok{color:#1a7f37}.refused{color:#cf222e}svg{background:#fff;border:1px solid #d0d7de}
    """

    static func page(title: String, root: String, body: String) -> String {
        """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
        <title>\(escape(title))</title><style>\(style)</style></head>
        <body><header><a href="\(root)index.html">slmstore registry</a></header><main>
        \(body)
        </main></body></html>

        """
    }

    /// Horizontal bars, one per row, scaled to the largest value; labels escaped.
    static func bars(_ rows: [(label: String, value: UInt64)], title: String) -> String {
        let width = 640, rowHeight = 20, left = 120
        let top = rows.map(\.value).max() ?? 0
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(rows.count * rowHeight + 28)\" role=\"img\" aria-label=\"\(escape(title))\">"
        svg += "<text x=\"8\" y=\"16\" font-size=\"12\">\(escape(title))</text>"
        for (i, r) in rows.enumerated() {
            let y = 24 + i * rowHeight
            let w = top == 0 ? 0 : Int(Double(width - left - 90) * Double(r.value) / Double(top))
            svg += "<text x=\"8\" y=\"\(y + 13)\" font-size=\"12\">\(escape(r.label))</text>"
            svg += "<rect x=\"\(left)\" y=\"\(y + 2)\" width=\"\(max(1, w))\" height=\"\(rowHeight - 6)\" fill=\"#2a9d8f\"/>"
            svg += "<text x=\"\(left + w + 6)\" y=\"\(y + 13)\" font-size=\"12\">\(bytes(r.value))</text>"
        }
        return svg + "</svg>"
    }

    /// One bar split in two: bytes reused from the parent and bytes new in this version.
    static func split(reused: UInt64, new: UInt64) -> String {
        let width = 640
        let total = max(1, reused + new)
        let w = Int(Double(width - 2) * Double(reused) / Double(total))
        return "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"46\" role=\"img\" aria-label=\"reused and new bytes\">"
            + "<rect x=\"1\" y=\"4\" width=\"\(w)\" height=\"18\" fill=\"#8ecae6\"/><rect x=\"\(1 + w)\" y=\"4\" width=\"\(width - 2 - w)\" height=\"18\" fill=\"#e76f51\"/>"
            + "<text x=\"4\" y=\"40\" font-size=\"12\">reused \(bytes(reused)) · new \(bytes(new))</text></svg>"
    }

    /// A JSON value from a card as readable HTML: maps as definition lists, lists as lists.
    static func value(_ v: JSONValue) -> String {
        switch v {
        case .object, .members:
            return "<dl>" + v.memberList!.map { "<dt>\(escape($0.key))</dt><dd>\(value($0.value))</dd>" }.joined() + "</dl>"
        case let .array(a):
            return "<ul>" + a.map { "<li>\(value($0))</li>" }.joined() + "</ul>"
        case let .string(s):
            return escape(s)
        case .null:
            return "<span class=\"muted\">null</span>"
        default:
            return escape(v.canonicalString())
        }
    }
}

extension String {
    /// The string with "0"s before it up to `width` characters.
    fileprivate func leftPadded(to width: Int) -> String { count >= width ? self : String(repeating: "0", count: width - count) + self }
}
