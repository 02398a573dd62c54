module github.com/vmmdev/vmm

go 1.26.8
