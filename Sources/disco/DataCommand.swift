import ArgumentParser
import DiscoImage
import Foundation

/// Where `disco data` takes its images from.
enum DataSource: String, ExpressibleByArgument, CaseIterable {
    case fashionMNIST = "fashion-mnist"
}

extension FashionMNISTTask: ExpressibleByArgument {}

struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Build a data set: two domains (CycleGAN layout: trainA/ trainB/ testA/ testB/), or labelled classes.",
        discussion: """
        fashion-mnist bags-shoes: Bag (A) vs Sneaker + Sandal + Ankle boot (B); train 6000/18000, test 1000/3000.
        fashion-mnist edges-shoes: edge maps of shoes (A) vs shoes (B); train halves come from different \
        images (9000/9000, unpaired); test A/B are paired by file name (3000).
        fashion-mnist classes: all ten classes as train/<label>-<name>/ and test/<label>-<name>/ (60000/10000), \
        files named by their index in the split, 28x28 unless --size says otherwise (for `disco gan`).
        Reads Debian's dataset-fashion-mnist (installed with apt-get when missing) and keeps its train/test split.
        """)

    @Argument(help: "Source of the images.")
    var source: DataSource

    @Argument(help: "Task to build (see above).")
    var name: FashionMNISTTask

    @Option(help: "Output folder. Default: datasets/NAME-SIZE.")
    var out: String?

    @Option(help: "Image side in pixels (28x28 resized with a bicubic filter). Default: 64, or 28 for classes.")
    var size: Int?

    @Option(help: "Channels of the PNGs: 1 (the data's own gray) or 3 (gray replicated to RGB).")
    var channels = 1

    func validate() throws {
        try requirePath(out, "--out")
        if let size, !(8...1024).contains(size) { throw ValidationError("--size must be in 8...1024, got \(size)") }
        guard channels == 1 || channels == 3 else { throw ValidationError("--channels must be 1 or 3, got \(channels)") }
    }

    func run() throws {
        let size = self.size ?? (name == .classes ? 28 : 64)
        let folder = out ?? "datasets/\(name.rawValue)-\(size)"
        let start = Date()
        do {
            try buildFashionMNIST(task: name, out: folder, size: size, channels: channels) { print($0) }
        } catch let error as ImageError {
            throw CLIError(error.description)
        }
        print(String(format: "built %@ in %.1f s", folder, Date().timeIntervalSince(start)))
    }
}
