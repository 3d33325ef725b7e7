import Foundation

/// `disco translate DIR --output OUT --html`: OUT/index.html, a results page as CycleGAN's
/// (one row per image: input, translation, reconstruction, and the ground truth when paired),
/// each with its distance, sortable by any distance. It works offline: no scripts or styles from
/// elsewhere, and the images are files beside it (`OUT/index-files/`, the translations in OUT).
public enum ResultsPage {
    public struct Row {
        public var name: String
        /// Paths relative to the page.
        public var input: String, translation: String, reconstruction: String
        public var truth: String?
        /// L1 (mean absolute difference, pixels in [0, 1]) of the reconstruction against the input,
        /// and of the translation against the ground truth.
        public var reconstructionL1: Double
        public var truthL1: Double?
        public var truthSSIM: Double?

        public init(name: String, input: String, translation: String, reconstruction: String, truth: String?,
                    reconstructionL1: Double, truthL1: Double?, truthSSIM: Double?) {
            self.name = name; self.input = input; self.translation = translation; self.reconstruction = reconstruction
            self.truth = truth; self.reconstructionL1 = reconstructionL1; self.truthL1 = truthL1; self.truthSSIM = truthSSIM
        }
    }

    public static func html(title: String, direction: String, rows: [Row]) -> String {
        let paired = rows.contains { $0.truth != nil }
        let esc = Report.esc
        var h = """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"><title>\(esc(title))</title>
        <style>
        body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:16px 24px;color:#222}
        table{border-collapse:collapse}td,th{border-bottom:1px solid #ddd;padding:4px 10px;text-align:center}
        th{cursor:pointer;background:#f4f5f7;position:sticky;top:0}th:hover{background:#e3e6ea}
        img{width:128px;height:auto;image-rendering:pixelated;display:block;margin:auto}
        td.n{font:12px ui-monospace,Menlo,Consolas,monospace;text-align:left}
        </style></head><body>
        <h1>\(esc(title))</h1>
        <p>\(rows.count) images, \(esc(direction)). Distances: L1 = mean |difference| of pixels in [0, 1], at the model's size.
        Click a column heading to sort by it.</p>
        <table id="t"><thead><tr><th data-k="s">name</th><th>input</th><th>translation</th><th>reconstruction</th>
        <th data-k="n">reconstruction L1</th>
        """
        if paired { h += "<th>ground truth</th><th data-k=\"n\">translation L1 to truth</th><th data-k=\"n\">SSIM to truth</th>" }
        h += "</tr></thead><tbody>\n"
        func img(_ path: String) -> String { "<img src=\"\(esc(path))\" alt=\"\" loading=\"lazy\">" }
        func num(_ v: Double?) -> String { v.map { String(format: "%.4f", $0) } ?? "" }
        for r in rows {
            h += "<tr><td class=\"n\">\(esc(r.name))</td><td>\(img(r.input))</td><td>\(img(r.translation))</td>"
            h += "<td>\(img(r.reconstruction))</td><td>\(num(r.reconstructionL1))</td>"
            if paired { h += "<td>\(r.truth.map(img) ?? "")</td><td>\(num(r.truthL1))</td><td>\(num(r.truthSSIM))</td>" }
            h += "</tr>\n"
        }
        h += """
        </tbody></table>
        <script>
        document.querySelectorAll('#t th[data-k]').forEach(function(th){th.onclick=function(){
          var i=th.cellIndex,b=document.querySelector('#t tbody'),num=th.dataset.k=='n',up=th.dataset.up!='1';
          var rows=Array.prototype.slice.call(b.rows);
          rows.sort(function(x,y){var a=x.cells[i].textContent,c=y.cells[i].textContent;
            var d=num?(parseFloat(a)||0)-(parseFloat(c)||0):a.localeCompare(c);return up?d:-d});
          rows.forEach(function(r){b.appendChild(r)});th.dataset.up=up?'1':'0'}});
        </script>
        </body></html>

        """
        return h
    }
}
