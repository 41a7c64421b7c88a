; Windows installer for Kilt (NSIS 3, Unicode). Packs the folder installer/windows/build.sh
; gathers; installs per machine under Program Files with a Start menu entry and an uninstaller.
; NOT BUILT OR TESTED HERE: makensis runs on Windows (MSYS2's mingw-w64-ucrt-x86_64-nsis).
;   makensis -DVERSION=0.1.0 -DSTAGE=C:\path\to\build-windows\Kilt -DOUTFILE=kilt-setup.exe kilt.nsi
; SPDX-License-Identifier: GPL-3.0-or-later

Unicode true
!include "MUI2.nsh"
!include "x64.nsh"

!ifndef VERSION
  !error "define VERSION (makensis -DVERSION=...)"
!endif
!ifndef STAGE
  !error "define STAGE, the folder build.sh filled (makensis -DSTAGE=...)"
!endif
!ifndef OUTFILE
  !define OUTFILE "kilt-${VERSION}-setup.exe"
!endif

!define UNINST_KEY "Software\Microsoft\Windows\CurrentVersion\Uninstall\Kilt"
; The Khronos ICD loader lists OpenCL drivers here (a DWORD 0 per driver DLL path).
!define ICD_KEY "SOFTWARE\Khronos\OpenCL\Vendors"

Name "Kilt ${VERSION}"
OutFile "${OUTFILE}"
InstallDir "$PROGRAMFILES64\Kilt"
InstallDirRegKey HKLM "${UNINST_KEY}" "InstallLocation"
RequestExecutionLevel admin
SetCompressor /SOLID lzma

!define MUI_ICON "${NSISDIR}\Contrib\Graphics\Icons\modern-install.ico"
!define MUI_FINISHPAGE_RUN "$INSTDIR\bin\kilt.exe"
; The tree has no license text yet (GPL-3.0-or-later by SPDX lines); build.sh copies COPYING
; when it exists, and the page appears then.
!if /FileExists "${STAGE}\share\doc\kilt\COPYING"
!insertmacro MUI_PAGE_LICENSE "${STAGE}\share\doc\kilt\COPYING"
!endif
!insertmacro MUI_PAGE_COMPONENTS
!insertmacro MUI_PAGE_DIRECTORY
!insertmacro MUI_PAGE_INSTFILES
!insertmacro MUI_PAGE_FINISH
!insertmacro MUI_UNPAGE_CONFIRM
!insertmacro MUI_UNPAGE_INSTFILES
!insertmacro MUI_LANGUAGE "English"

Function .onInit
  ${IfNot} ${RunningX64}
    MessageBox MB_ICONSTOP "Kilt needs 64-bit Windows 10 or later."
    Abort
  ${EndIf}
  SetRegView 64
FunctionEnd

Section "Kilt (required)" SecKilt
  SectionIn RO
  SetOutPath "$INSTDIR"
  File /r /x "pocl.dll" "${STAGE}\*.*"
  WriteUninstaller "$INSTDIR\uninstall.exe"

  CreateDirectory "$SMPROGRAMS\Kilt"
  CreateShortcut "$SMPROGRAMS\Kilt\Kilt.lnk" "$INSTDIR\bin\kilt.exe"
  CreateShortcut "$SMPROGRAMS\Kilt\Uninstall Kilt.lnk" "$INSTDIR\uninstall.exe"

  WriteRegStr HKLM "${UNINST_KEY}" "DisplayName" "Kilt"
  WriteRegStr HKLM "${UNINST_KEY}" "DisplayVersion" "${VERSION}"
  WriteRegStr HKLM "${UNINST_KEY}" "Publisher" "The Kilt developers"
  WriteRegStr HKLM "${UNINST_KEY}" "InstallLocation" "$INSTDIR"
  WriteRegStr HKLM "${UNINST_KEY}" "DisplayIcon" "$INSTDIR\bin\kilt.exe"
  WriteRegStr HKLM "${UNINST_KEY}" "UninstallString" '"$INSTDIR\uninstall.exe"'
  WriteRegDWORD HKLM "${UNINST_KEY}" "NoModify" 1
  WriteRegDWORD HKLM "${UNINST_KEY}" "NoRepair" 1
SectionEnd

; Only offered when build.sh ran with --with-pocl. GPU drivers from Intel, AMD and NVIDIA
; register their own OpenCL drivers; this adds a CPU device for machines without one.
!if /FileExists "${STAGE}\bin\pocl.dll"
Section /o "PoCL (OpenCL on the processor)" SecPocl
  SetOutPath "$INSTDIR\bin"
  File "${STAGE}\bin\pocl.dll"
  WriteRegDWORD HKLM "${ICD_KEY}" "$INSTDIR\bin\pocl.dll" 0
SectionEnd
!endif

Section "Uninstall"
  SetRegView 64
  DeleteRegValue HKLM "${ICD_KEY}" "$INSTDIR\bin\pocl.dll"
  DeleteRegKey HKLM "${UNINST_KEY}"
  Delete "$SMPROGRAMS\Kilt\Kilt.lnk"
  Delete "$SMPROGRAMS\Kilt\Uninstall Kilt.lnk"
  RMDir "$SMPROGRAMS\Kilt"
  ; Only what the installer put there: bin, lib, share and the uninstaller.
  RMDir /r "$INSTDIR\bin"
  RMDir /r "$INSTDIR\lib"
  RMDir /r "$INSTDIR\share"
  Delete "$INSTDIR\uninstall.exe"
  RMDir "$INSTDIR"
SectionEnd
