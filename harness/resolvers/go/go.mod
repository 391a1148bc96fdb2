module addrsel.invalid/resolve

go 1.19
