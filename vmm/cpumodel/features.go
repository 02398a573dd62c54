package cpumodel

// Reg is a CPUID output register.
type Reg uint8

// The CPUID output registers.
const (
	EAX Reg = iota
	EBX
	ECX
	EDX
)

func (r Reg) String() string { return [...]string{"EAX", "EBX", "ECX", "EDX"}[r] }

// Level is the x86-64 psABI microarchitecture level that first includes an
// instruction-set feature; 0 marks a platform feature (interrupt controller,
// paging, timers, mitigations) that the named models leave as the host has it.
type Level uint8

// Feature is one CPUID feature bit, named as Linux's /proc/cpuinfo names it.
type Feature struct {
	Name       string
	Leaf, Sub  uint32
	Reg        Reg
	Bit        uint8
	Level      Level // psABI level that includes it; 0: platform feature
	ISA        bool  // an instruction-set extension (named models govern it)
	Needs      string
	XSAVEState uint64 // XCR0 components only this feature uses
}

// Leaves holding the bits of the table.
const (
	leafVendor    = 0x0
	leafXSAVE     = 0xd
	leafExtMax    = 0x80000000
	leafExtFeat   = 0x80000001
	xsaveLegacy   = 0x3 // x87 and SSE state: always present with XSAVE
	xsaveAreaBase = 576 // legacy area and XSAVE header
	xsaveMaxComp  = 63  // highest XCR0/XSS component number
	vendorLen     = 12  // bytes of a vendor string
	isa           = true
)

// features is the table of every CPUID bit --cpu can name: the one place
// that maps a name to a leaf, register and bit. Read-only.
var features = []Feature{
	// Leaf 1 EDX.
	{Name: "fpu", Leaf: 1, Reg: EDX, Bit: 0, Level: 1, ISA: isa},
	{Name: "vme", Leaf: 1, Reg: EDX, Bit: 1},
	{Name: "de", Leaf: 1, Reg: EDX, Bit: 2},
	{Name: "pse", Leaf: 1, Reg: EDX, Bit: 3},
	{Name: "tsc", Leaf: 1, Reg: EDX, Bit: 4},
	{Name: "msr", Leaf: 1, Reg: EDX, Bit: 5},
	{Name: "pae", Leaf: 1, Reg: EDX, Bit: 6},
	{Name: "mce", Leaf: 1, Reg: EDX, Bit: 7},
	{Name: "cx8", Leaf: 1, Reg: EDX, Bit: 8, Level: 1, ISA: isa},
	{Name: "apic", Leaf: 1, Reg: EDX, Bit: 9},
	{Name: "sep", Leaf: 1, Reg: EDX, Bit: 11},
	{Name: "mtrr", Leaf: 1, Reg: EDX, Bit: 12},
	{Name: "pge", Leaf: 1, Reg: EDX, Bit: 13},
	{Name: "mca", Leaf: 1, Reg: EDX, Bit: 14},
	{Name: "cmov", Leaf: 1, Reg: EDX, Bit: 15, Level: 1, ISA: isa},
	{Name: "pat", Leaf: 1, Reg: EDX, Bit: 16},
	{Name: "pse36", Leaf: 1, Reg: EDX, Bit: 17},
	{Name: "clflush", Leaf: 1, Reg: EDX, Bit: 19},
	{Name: "mmx", Leaf: 1, Reg: EDX, Bit: 23, Level: 1, ISA: isa},
	{Name: "fxsr", Leaf: 1, Reg: EDX, Bit: 24, Level: 1, ISA: isa},
	{Name: "sse", Leaf: 1, Reg: EDX, Bit: 25, Level: 1, ISA: isa, Needs: "fxsr"},
	{Name: "sse2", Leaf: 1, Reg: EDX, Bit: 26, Level: 1, ISA: isa, Needs: "sse"},
	{Name: "ss", Leaf: 1, Reg: EDX, Bit: 27},
	{Name: "ht", Leaf: 1, Reg: EDX, Bit: 28},
	// Leaf 1 ECX.
	{Name: "pni", Leaf: 1, Reg: ECX, Bit: 0, Level: 2, ISA: isa, Needs: "sse2"},
	{Name: "pclmulqdq", Leaf: 1, Reg: ECX, Bit: 1, ISA: isa, Needs: "sse2"},
	{Name: "monitor", Leaf: 1, Reg: ECX, Bit: 3},
	{Name: "vmx", Leaf: 1, Reg: ECX, Bit: 5},
	{Name: "ssse3", Leaf: 1, Reg: ECX, Bit: 9, Level: 2, ISA: isa, Needs: "pni"},
	{Name: "fma", Leaf: 1, Reg: ECX, Bit: 12, Level: 3, ISA: isa, Needs: "avx"},
	{Name: "cx16", Leaf: 1, Reg: ECX, Bit: 13, Level: 2, ISA: isa},
	{Name: "pdcm", Leaf: 1, Reg: ECX, Bit: 15},
	{Name: "pcid", Leaf: 1, Reg: ECX, Bit: 17},
	{Name: "sse4_1", Leaf: 1, Reg: ECX, Bit: 19, Level: 2, ISA: isa, Needs: "ssse3"},
	{Name: "sse4_2", Leaf: 1, Reg: ECX, Bit: 20, Level: 2, ISA: isa, Needs: "sse4_1"},
	{Name: "x2apic", Leaf: 1, Reg: ECX, Bit: 21, Needs: "apic"},
	{Name: "movbe", Leaf: 1, Reg: ECX, Bit: 22, Level: 3, ISA: isa},
	{Name: "popcnt", Leaf: 1, Reg: ECX, Bit: 23, Level: 2, ISA: isa},
	{Name: "tsc_deadline_timer", Leaf: 1, Reg: ECX, Bit: 24, Needs: "apic"},
	{Name: "aes", Leaf: 1, Reg: ECX, Bit: 25, ISA: isa, Needs: "sse2"},
	{Name: "xsave", Leaf: 1, Reg: ECX, Bit: 26, Level: 3, ISA: isa, Needs: "fxsr"},
	{Name: "avx", Leaf: 1, Reg: ECX, Bit: 28, Level: 3, ISA: isa, Needs: "xsave", XSAVEState: 1 << 2},
	{Name: "f16c", Leaf: 1, Reg: ECX, Bit: 29, Level: 3, ISA: isa, Needs: "avx"},
	{Name: "rdrand", Leaf: 1, Reg: ECX, Bit: 30, ISA: isa},
	{Name: "hypervisor", Leaf: 1, Reg: ECX, Bit: 31},
	// Leaf 7.0 EBX.
	{Name: "fsgsbase", Leaf: 7, Reg: EBX, Bit: 0},
	{Name: "tsc_adjust", Leaf: 7, Reg: EBX, Bit: 1},
	{Name: "bmi1", Leaf: 7, Reg: EBX, Bit: 3, Level: 3, ISA: isa},
	{Name: "hle", Leaf: 7, Reg: EBX, Bit: 4, ISA: isa},
	{Name: "avx2", Leaf: 7, Reg: EBX, Bit: 5, Level: 3, ISA: isa, Needs: "avx"},
	{Name: "smep", Leaf: 7, Reg: EBX, Bit: 7},
	{Name: "bmi2", Leaf: 7, Reg: EBX, Bit: 8, Level: 3, ISA: isa},
	{Name: "erms", Leaf: 7, Reg: EBX, Bit: 9},
	{Name: "invpcid", Leaf: 7, Reg: EBX, Bit: 10, Needs: "pcid"},
	{Name: "rtm", Leaf: 7, Reg: EBX, Bit: 11, ISA: isa},
	{Name: "mpx", Leaf: 7, Reg: EBX, Bit: 14, ISA: isa, Needs: "xsave", XSAVEState: 3 << 3},
	{Name: "avx512f", Leaf: 7, Reg: EBX, Bit: 16, Level: 4, ISA: isa, Needs: "avx2", XSAVEState: 7 << 5},
	{Name: "avx512dq", Leaf: 7, Reg: EBX, Bit: 17, Level: 4, ISA: isa, Needs: "avx512f"},
	{Name: "rdseed", Leaf: 7, Reg: EBX, Bit: 18, ISA: isa},
	{Name: "adx", Leaf: 7, Reg: EBX, Bit: 19, ISA: isa},
	{Name: "smap", Leaf: 7, Reg: EBX, Bit: 20},
	{Name: "avx512ifma", Leaf: 7, Reg: EBX, Bit: 21, ISA: isa, Needs: "avx512f"},
	{Name: "clflushopt", Leaf: 7, Reg: EBX, Bit: 23, ISA: isa},
	{Name: "clwb", Leaf: 7, Reg: EBX, Bit: 24, ISA: isa},
	{Name: "avx512pf", Leaf: 7, Reg: EBX, Bit: 26, ISA: isa, Needs: "avx512f"},
	{Name: "avx512er", Leaf: 7, Reg: EBX, Bit: 27, ISA: isa, Needs: "avx512f"},
	{Name: "avx512cd", Leaf: 7, Reg: EBX, Bit: 28, Level: 4, ISA: isa, Needs: "avx512f"},
	{Name: "sha_ni", Leaf: 7, Reg: EBX, Bit: 29, ISA: isa, Needs: "sse2"},
	{Name: "avx512bw", Leaf: 7, Reg: EBX, Bit: 30, Level: 4, ISA: isa, Needs: "avx512f"},
	{Name: "avx512vl", Leaf: 7, Reg: EBX, Bit: 31, Level: 4, ISA: isa, Needs: "avx512f"},
	// Leaf 7.0 ECX.
	{Name: "avx512vbmi", Leaf: 7, Reg: ECX, Bit: 1, ISA: isa, Needs: "avx512f"},
	{Name: "umip", Leaf: 7, Reg: ECX, Bit: 2},
	{Name: "pku", Leaf: 7, Reg: ECX, Bit: 3, XSAVEState: 1 << 9},
	{Name: "waitpkg", Leaf: 7, Reg: ECX, Bit: 5, ISA: isa},
	{Name: "avx512_vbmi2", Leaf: 7, Reg: ECX, Bit: 6, ISA: isa, Needs: "avx512f"},
	{Name: "gfni", Leaf: 7, Reg: ECX, Bit: 8, ISA: isa, Needs: "sse2"},
	{Name: "vaes", Leaf: 7, Reg: ECX, Bit: 9, ISA: isa, Needs: "avx"},
	{Name: "vpclmulqdq", Leaf: 7, Reg: ECX, Bit: 10, ISA: isa, Needs: "avx"},
	{Name: "avx512_vnni", Leaf: 7, Reg: ECX, Bit: 11, ISA: isa, Needs: "avx512f"},
	{Name: "avx512_bitalg", Leaf: 7, Reg: ECX, Bit: 12, ISA: isa, Needs: "avx512f"},
	{Name: "avx512_vpopcntdq", Leaf: 7, Reg: ECX, Bit: 14, ISA: isa, Needs: "avx512f"},
	{Name: "la57", Leaf: 7, Reg: ECX, Bit: 16},
	{Name: "rdpid", Leaf: 7, Reg: ECX, Bit: 22, ISA: isa},
	{Name: "movdiri", Leaf: 7, Reg: ECX, Bit: 27, ISA: isa},
	{Name: "movdir64b", Leaf: 7, Reg: ECX, Bit: 28, ISA: isa},
	// Leaf 7.0 EDX.
	{Name: "avx512_4vnniw", Leaf: 7, Reg: EDX, Bit: 2, ISA: isa, Needs: "avx512f"},
	{Name: "avx512_4fmaps", Leaf: 7, Reg: EDX, Bit: 3, ISA: isa, Needs: "avx512f"},
	{Name: "fsrm", Leaf: 7, Reg: EDX, Bit: 4},
	{Name: "avx512_vp2intersect", Leaf: 7, Reg: EDX, Bit: 8, ISA: isa, Needs: "avx512f"},
	{Name: "md_clear", Leaf: 7, Reg: EDX, Bit: 10},
	{Name: "serialize", Leaf: 7, Reg: EDX, Bit: 14, ISA: isa},
	{Name: "tsxldtrk", Leaf: 7, Reg: EDX, Bit: 16, ISA: isa},
	{Name: "amx_bf16", Leaf: 7, Reg: EDX, Bit: 22, ISA: isa, Needs: "amx_tile"},
	{Name: "avx512_fp16", Leaf: 7, Reg: EDX, Bit: 23, ISA: isa, Needs: "avx512bw"},
	{Name: "amx_tile", Leaf: 7, Reg: EDX, Bit: 24, ISA: isa, Needs: "xsave", XSAVEState: 3 << 17},
	{Name: "amx_int8", Leaf: 7, Reg: EDX, Bit: 25, ISA: isa, Needs: "amx_tile"},
	{Name: "spec_ctrl", Leaf: 7, Reg: EDX, Bit: 26},
	{Name: "intel_stibp", Leaf: 7, Reg: EDX, Bit: 27},
	{Name: "flush_l1d", Leaf: 7, Reg: EDX, Bit: 28},
	{Name: "arch_capabilities", Leaf: 7, Reg: EDX, Bit: 29},
	{Name: "spec_ctrl_ssbd", Leaf: 7, Reg: EDX, Bit: 31},
	// Leaf 7.1 EAX.
	{Name: "avx_vnni", Leaf: 7, Sub: 1, Reg: EAX, Bit: 4, ISA: isa, Needs: "avx2"},
	{Name: "avx512_bf16", Leaf: 7, Sub: 1, Reg: EAX, Bit: 5, ISA: isa, Needs: "avx512f"},
	// Leaf 0xD.1 EAX.
	{Name: "xsaveopt", Leaf: 0xd, Sub: 1, Reg: EAX, Bit: 0, ISA: isa, Needs: "xsave"},
	{Name: "xsavec", Leaf: 0xd, Sub: 1, Reg: EAX, Bit: 1, ISA: isa, Needs: "xsave"},
	{Name: "xgetbv1", Leaf: 0xd, Sub: 1, Reg: EAX, Bit: 2, ISA: isa, Needs: "xsave"},
	{Name: "xsaves", Leaf: 0xd, Sub: 1, Reg: EAX, Bit: 3, ISA: isa, Needs: "xsave"},
	// Leaf 0x80000001 ECX.
	{Name: "lahf_lm", Leaf: leafExtFeat, Reg: ECX, Bit: 0, Level: 2, ISA: isa},
	{Name: "cmp_legacy", Leaf: leafExtFeat, Reg: ECX, Bit: 1},
	{Name: "svm", Leaf: leafExtFeat, Reg: ECX, Bit: 2},
	{Name: "extapic", Leaf: leafExtFeat, Reg: ECX, Bit: 3},
	{Name: "cr8_legacy", Leaf: leafExtFeat, Reg: ECX, Bit: 4},
	{Name: "abm", Leaf: leafExtFeat, Reg: ECX, Bit: 5, Level: 3, ISA: isa},
	{Name: "sse4a", Leaf: leafExtFeat, Reg: ECX, Bit: 6, ISA: isa, Needs: "sse2"},
	{Name: "misalignsse", Leaf: leafExtFeat, Reg: ECX, Bit: 7, ISA: isa},
	{Name: "3dnowprefetch", Leaf: leafExtFeat, Reg: ECX, Bit: 8, ISA: isa},
	{Name: "osvw", Leaf: leafExtFeat, Reg: ECX, Bit: 9},
	{Name: "xop", Leaf: leafExtFeat, Reg: ECX, Bit: 11, ISA: isa, Needs: "avx"},
	{Name: "fma4", Leaf: leafExtFeat, Reg: ECX, Bit: 16, ISA: isa, Needs: "avx"},
	{Name: "tbm", Leaf: leafExtFeat, Reg: ECX, Bit: 21, ISA: isa},
	{Name: "topoext", Leaf: leafExtFeat, Reg: ECX, Bit: 22},
	{Name: "perfctr_core", Leaf: leafExtFeat, Reg: ECX, Bit: 23},
	// Leaf 0x80000001 EDX.
	{Name: "syscall", Leaf: leafExtFeat, Reg: EDX, Bit: 11, Level: 1, ISA: isa},
	{Name: "nx", Leaf: leafExtFeat, Reg: EDX, Bit: 20},
	{Name: "mmxext", Leaf: leafExtFeat, Reg: EDX, Bit: 22, ISA: isa},
	{Name: "fxsr_opt", Leaf: leafExtFeat, Reg: EDX, Bit: 25},
	{Name: "pdpe1gb", Leaf: leafExtFeat, Reg: EDX, Bit: 26},
	{Name: "rdtscp", Leaf: leafExtFeat, Reg: EDX, Bit: 27},
	{Name: "lm", Leaf: leafExtFeat, Reg: EDX, Bit: 29},
	{Name: "3dnowext", Leaf: leafExtFeat, Reg: EDX, Bit: 30, ISA: isa},
	{Name: "3dnow", Leaf: leafExtFeat, Reg: EDX, Bit: 31, ISA: isa},
}

// aliases are QEMU's names (after normalize) for features Linux names
// otherwise. Read-only.
var aliases = map[string]string{
	"sse3":         "pni",
	"tsc_deadline": "tsc_deadline_timer",
	"avx512vbmi2":  "avx512_vbmi2",
	"avx512vnni":   "avx512_vnni",
	"avx512bitalg": "avx512_bitalg",
	"stibp":        "intel_stibp",
	"ssbd":         "spec_ctrl_ssbd",
	"xd":           "nx",
	"i64":          "lm",
	"cr8legacy":    "cr8_legacy",
	"lzcnt":        "abm",
}
