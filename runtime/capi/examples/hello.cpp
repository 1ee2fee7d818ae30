// Lathe's C API from C++: a small RAII wrapper, one call, and an error caught as an
// exception.
//
//   hello MODEL INPUT D0,D1,...
#include "lathe.h"

#include <cstdint>
#include <iostream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

void check(LatheStatus s) {
    if (s != LATHE_STATUS_OK) throw std::runtime_error(lathe_last_error());
}

struct Model {
    std::unique_ptr<LatheModel, void (*)(LatheModel *)> m{nullptr, lathe_model_free};
    explicit Model(const char *path) {
        LatheModel *raw = nullptr;
        check(lathe_model_load(path, 0, &raw));
        m.reset(raw);
    }
    std::vector<float> run(const char *input, const std::vector<int64_t> &dims,
                           const std::vector<float> &x) const {
        LatheTensorView v{input, LATHE_DTYPE_F32, dims.data(), dims.size(), x.data(),
                          x.size() * sizeof(float)};
        LatheOutputs *raw = nullptr;
        check(lathe_model_run(m.get(), &v, 1, &raw));
        std::unique_ptr<LatheOutputs, void (*)(LatheOutputs *)> outs{raw, lathe_outputs_free};
        auto data = static_cast<const float *>(lathe_outputs_data(outs.get(), 0));
        return std::vector<float>(data, data + lathe_outputs_bytes(outs.get(), 0) / sizeof(float));
    }
};

}  // namespace

int main(int argc, char **argv) {
    if (argc != 4) {
        std::cerr << "usage: " << argv[0] << " MODEL INPUT D0,D1,...\n";
        return 2;
    }
    try {
        Model model(argv[1]);
        std::vector<int64_t> dims;
        std::stringstream ds(argv[3]);
        for (std::string d; std::getline(ds, d, ',');) dims.push_back(std::stoll(d));
        size_t count = 1;
        for (auto d : dims) count *= static_cast<size_t>(d);
        std::vector<float> x(count);
        for (size_t i = 0; i < count; i++) x[i] = static_cast<float>(i % 17) * 0.0625f - 0.5f;
        auto y = model.run(argv[2], dims, x);
        std::cout << "outputs: " << y.size() << " values, first " << y.at(0) << "\n";
        try {
            model.run("no_such_input", dims, x);
            std::cerr << "an unknown input was accepted\n";
            return 1;
        } catch (const std::runtime_error &e) {
            std::cout << "error: " << e.what() << "\n";
        }
    } catch (const std::exception &e) {
        std::cerr << "error: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
