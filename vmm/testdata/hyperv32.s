	.code32
	.globl _start
_start:
	mov $0x200000, %edi
	mov $0x40000001, %eax
	cpuid
	mov %eax, 0(%edi)
	# guest OS ID, hypercall page at 0x300000
	mov $0x40000000, %ecx
	mov $0x1, %eax
	mov $0x81000000, %edx
	wrmsr
	mov $0x40000001, %ecx
	mov $0x300001, %eax
	xor %edx, %edx
	wrmsr
	# unknown code 0x99: EDX:EAX input
	xor %edx, %edx
	mov $0x99, %eax
	xor %ebx, %ebx
	xor %ecx, %ecx
	mov $0x300000, %esi
	call *%esi
	mov %eax, 8(%edi)
	mov %edx, 12(%edi)
	# slow HvFlushVirtualAddressList, 3 reps, all processors: input at 0x220000 (EBX:ECX)
	movl $1, 0x220008
	mov $3, %edx            # rep count in bits 43:32
	mov $0x3, %eax
	xor %ebx, %ebx
	mov $0x220000, %ecx
	xor %esi, %esi
	xor %edi, %edi
	mov $0x300000, %ebp
	call *%ebp
	mov $0x200000, %edi
	mov %eax, 16(%edi)
	mov %edx, 20(%edi)
	# fast IPI, empty mask (EDI:ESI = 0)
	xor %edx, %edx
	mov $0x1000b, %eax
	xor %ebx, %ebx
	mov $0x40, %ecx
	xor %esi, %esi
	push %edi
	xor %edi, %edi
	call *%ebp
	pop %edi
	mov %eax, 24(%edi)
	mov %edx, 28(%edi)
	# crash: P0..P4 = 0x11..0x15, then CRASH_CTL = bit 63
	mov $0x40000100, %ecx
	mov $0x11, %eax
1:	xor %edx, %edx
	wrmsr
	inc %ecx
	inc %eax
	cmp $0x40000105, %ecx
	jne 1b
	xor %eax, %eax
	mov $0x80000000, %edx
	wrmsr
	# not reached: the VM stops on the crash
	mov $0x7f, %al
	out %al, $0xf4
	hlt
