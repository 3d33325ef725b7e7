import DiscoCore

/// `disco gan sample`'s files: a GAN's images (`GANModel.sample`, [count, 28, 28, 1] in [0, 1])
/// as a folder of PNGs or as one grid PNG.
public enum GANSampleFiles {
    /// One PNG per image in `folder` (created): NNNNN.png, or NNNNN-NAME.png for a conditional
    /// model (`classNames`), NAME being the label of image i: `labels[i]`, or without `labels`
    /// the labels in turn (i mod the label count), as `GANModel.sample` draws them.
    public static func writeFolder(_ images: Tensor, labels: [Int]?, classNames: [String]?, to folder: String) throws {
        try Checkpoint.createDirectory(folder)
        let s = GANConfig.imageSize, per = s * s, count = images.shape[0]
        let base = folder.hasSuffix("/") ? folder : folder + "/"
        for i in 0..<count {
            let pixels = Array(UnsafeBufferPointer(start: images.data + i * per, count: per))
            let tag = classNames.map { "-" + $0[labels?[i] ?? i % $0.count] } ?? ""
            try writePixels(pixels, s, s, 1, base + String(format: "%05d", i) + tag + ".png")
        }
    }

    /// One grid PNG at `path`: with `labelsInTurn` (a conditional model's images drawn label by
    /// label in turn, `classNames` given), one row per label; else rows of ceil(sqrt(count))
    /// images, at least 8 (the last row filled up with white).
    public static func writeGrid(_ images: Tensor, classNames: [String]?, labelsInTurn: Bool, to path: String) throws {
        let s = GANConfig.imageSize, per = s * s, count = images.shape[0]
        var rows: [Tensor] = []
        if let names = classNames, labelsInTurn {
            let k = names.count, perLabel = (count + k - 1) / k
            rows = (0..<k).map { label in
                let t = Tensor(filling: 1, shape: [perLabel, s, s, 1])
                for (j, i) in stride(from: label, to: count, by: k).enumerated() { (t.data + j * per).update(from: images.data + i * per, count: per) }
                return t
            }
        } else {
            let columns = min(count, max(8, Int(Double(count).squareRoot().rounded(.up))))
            for r in 0..<((count + columns - 1) / columns) {
                let t = Tensor(filling: 1, shape: [columns, s, s, 1])
                t.data.update(from: images.data + r * columns * per, count: min(columns, count - r * columns) * per)
                rows.append(t)
            }
        }
        let grid = SampleGrid.compose(rows: rows)
        try writePixels(grid.pixels, grid.width, grid.height, 1, path)
    }
}
