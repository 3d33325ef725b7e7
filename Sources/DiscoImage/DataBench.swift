import Foundation
import DiscoCore

/// `disco bench data`: batch loading time (Fashion-MNIST domains, and generated 256x256 JPEGs
/// shrunk to the model size) and how long a trainer computing `step` seconds per iteration waits
/// for the background loader. Builds its data under `work` if missing.
public struct DataBench {
    public var batch = 64, size = 64, channels = 3, batches = 8, iterations = 10, jpegs = 256
    public var step = 0.8
    public var work = "/tmp/disco-bench-data"
    public init() {}

    /// One result per data set (the keys `disco bench data --json` prints); `progress` hears of
    /// data sets being built.
    public func run(progress: (String) -> Void = { _ in }) throws -> [[String: Any]] {
        var results: [[String: Any]] = []
        let fashion = "\(work)/bags-shoes-\(size)"
        if !FileManager.default.fileExists(atPath: "\(fashion)/dataset.json") {
            progress("building \(fashion) ...")
            try buildFashionMNIST(task: .bagsShoes, out: fashion, size: size, channels: 1)
        }
        results.append(try measure(name: "fashion-mnist bags-shoes \(size)px", a: "\(fashion)/trainA", b: "\(fashion)/trainB", channels: 1))
        let photos = "\(work)/jpeg256"
        try makeJPEGs(folder: photos)
        let kb = try averageFileKB(folder: "\(photos)/A")
        results.append(try measure(name: String(format: "256x256 JPEG (%.0f KB) -> %dpx", kb, size), a: "\(photos)/A", b: "\(photos)/B", channels: channels))
        return results
    }

    /// Times batches of A+B through the loader: uncached (every batch decodes), cached
    /// (after one full pass over both domains), and the wait of a consumer computing `step` s per batch.
    func measure(name: String, a: String, b: String, channels: Int) throws -> [String: Any] {
        let folderA = try ImageFolder(path: a), folderB = try ImageFolder(path: b)
        var options = LoaderOptions()
        options.batch = batch; options.size = size; options.channels = channels; options.prefetch = 1
        // Uncached: the loader never keeps images, so every batch decodes its files.
        options.cacheBytes = 0
        let decode = try timePerBatch(UnpairedLoader(a: folderA, b: folderB, options: options))
        options.cacheBytes = 1 << 30
        let cached: (wall: Double, cpu: Double)
        do {
            let pass = (max(folderA.count, folderB.count) + batch - 1) / batch
            let loader = UnpairedLoader(a: folderA, b: folderB, options: options)
            for _ in 0..<pass { _ = try loader.next() }
            cached = try timePerBatch(loader)
        }
        // Simulated training: the consumer computes for `step` seconds per batch.
        options.prefetch = 3
        let loader = UnpairedLoader(a: folderA, b: folderB, options: options)
        var waits: [Double] = []
        for _ in 0..<iterations {
            _ = try loader.next()
            waits.append(loader.lastWaitSeconds)
            Thread.sleep(forTimeInterval: step)
        }
        loader.stop()
        return [
            "data": name, "channels": channels, "images_a": folderA.count, "images_b": folderB.count,
            "ms_per_batch_decode": decode.wall, "cpu_ms_per_batch_decode": decode.cpu,
            "ms_per_batch_cached": cached.wall, "cpu_ms_per_batch_cached": cached.cpu,
            "decode_cpu_percent_of_step": decode.cpu / 10 / max(step, 1e-9),
            "wait_ms_total": waits.reduce(0, +) * 1000, "wait_ms_first": waits[0] * 1000,
            "wait_ms_steady": waits.dropFirst().reduce(0, +) * 1000,
        ]
    }

    /// Wall and CPU milliseconds per batch of one domain (half an A+B pair), over `batches`
    /// pairs taken one at a time after a first one (prefetch 1: the loader prepares the next
    /// pair while one is taken, so the wall time per `next()` is the time to produce a pair).
    func timePerBatch(_ loader: UnpairedLoader) throws -> (wall: Double, cpu: Double) {
        _ = try loader.next()
        let start = Benchmark.now(), cpu0 = loader.productionCPUSeconds, made0 = loader.batchesProduced
        for _ in 0..<batches { _ = try loader.next() }
        let wall = (Benchmark.now() - start) * 1000 / Double(batches) / 2
        let cpu = (loader.productionCPUSeconds - cpu0) * 1000 / Double(max(1, loader.batchesProduced - made0)) / 2
        loader.stop()
        return (wall, cpu)
    }

    /// Mean size of the files in `folder`, in KB.
    func averageFileKB(folder: String) throws -> Double {
        let names = try FileManager.default.contentsOfDirectory(atPath: folder)
        let bytes = try names.reduce(0) { $0 + ((try FileManager.default.attributesOfItem(atPath: "\(folder)/\($1)")[.size] as? Int) ?? 0) }
        return Double(bytes) / Double(max(names.count, 1)) / 1024
    }

    /// Writes `jpegs` 256x256 RGB JPEGs per domain (smooth patterns plus +-6 levels of noise, like
    /// a photo's texture; quality 90, about 20 KB each) unless they are there already.
    func makeJPEGs(folder: String) throws {
        var rng = SplitMix64(seed: 42)
        for domain in ["A", "B"] {
            let dir = "\(folder)/\(domain)"
            let done = (try? FileManager.default.contentsOfDirectory(atPath: dir).count) ?? 0
            if done >= jpegs { continue }
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            for i in 0..<jpegs {
                let f1 = Float.random(in: 1...6, using: &rng), f2 = Float.random(in: 1...6, using: &rng)
                var image = Image(width: 256, height: 256, channels: 3)
                for y in 0..<256 {
                    for x in 0..<256 {
                        let u = Float(x) / 256, v = Float(y) / 256
                        let noise = Float(rng.next() % 13) / 255
                        image[x, y, 0] = 0.5 + 0.4 * sinf(f1 * u * 6.28) * cosf(f2 * v * 6.28) + noise - 0.025
                        image[x, y, 1] = u * 0.8 + noise
                        image[x, y, 2] = v * 0.8 + noise
                    }
                }
                try encodeJPEG(image, path: String(format: "%@/%05d.jpg", dir, i + 1), quality: 90)
            }
        }
    }
}
