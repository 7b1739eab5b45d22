def scaleout_help(spec):
    return ''
