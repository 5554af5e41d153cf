"""(filled by the corresponding component)"""
